"""Hyperparameters picked on validation: `tune(grid, limits, evaluate, what)`.

A grid is widened past an edge pick (`past_edge`: geometric steps, a decade on a decade
grid) until the pick is inside (a pick on the edge of a grid says the grid was too
narrow, not that the value is best), then refined to the half-decades either side of the
pick. Below the lower limit comes the end of the valid values, `floor` (a learning
rate's 0: no update), tried once widening reaches the limit; a pick at the floor is a
tuned answer ("no update is best"), not an edge. `evaluate(value)` is a validation
accuracy; the caller caches what it computes, so a resumed study repeats nothing.
"""
import numpy as np
from absl import logging

HALF_DECADE = 10 ** 0.5


def past_edge(values, pick, limits=(0.0, float("inf"))):
  """The value to try next when `pick` sits on an edge of the ordered grid `values`: the
  edge times its ratio to its neighbour (a geometric step: a decade on a decade grid),
  clipped to `limits`; None when the pick is inside, or at a limit already. The one
  widening step of every tuning (this module's `tune`, the pre-training study's)."""
  values = sorted(values)
  if len(values) < 2 or values[0] < pick < values[-1]:
    return None
  if pick == values[0]:
    new = max(values[0] * values[0] / values[1], limits[0])
  else:
    new = min(values[-1] * values[-1] / values[-2], limits[1])
  new = float(f"{new:.3g}")
  return None if new in values else new


def tune(values, limits, evaluate, what: str, refine: bool = True, floor=0.0):
  """The value of a decade grid (`values`) with the best `evaluate(v)` (a validation
  accuracy; ties go to the smaller value): a pick on the grid's edge widens it by a
  decade on that side (within `limits`) until the pick is inside; a pick at the lower
  limit tries `floor` too (None: no floor), the end of the valid values, where a pick is
  not on an edge. Then, with `refine`, the half-decades either side of the pick are tried
  too. Returns (pick, values tried, {value: score}, on_edge)."""
  values = sorted(values)
  scores = {v: evaluate(v) for v in values}
  edge = len(values) < 3  # too few to have an inside
  while not edge:
    best = max(values, key=lambda v: scores[v])
    if best == floor:
      break  # nothing below the floor: "no update" won
    nxt = past_edge(values, best, limits)
    if nxt is None and floor is not None and best == values[0] and floor not in values:
      nxt = float(floor)  # at the lower limit: try the end of the valid values
    if nxt is None:
      # Inside, or at a limit: a learning rate's limits bound the search, not the valid
      # values, so a pick there still counts as on the edge.
      edge = best in (values[0], values[-1])
      if edge:
        logging.warning("%s: the pick %g is on the grid's edge, at the limits %s.", what,
                        best, limits)
      break
    logging.info("%s: pick %g on the grid's edge; widening to %g.", what, best, nxt)
    scores[nxt] = evaluate(nxt)
    values = sorted(values + [nxt])
  best = max(values, key=lambda v: scores[v])
  if refine and not edge and best != floor:
    for v in (best / HALF_DECADE, best * HALF_DECADE):
      scores[float(f"{v:.3g}")] = evaluate(float(f"{v:.3g}"))
    best = max(sorted(scores), key=scores.get)
  return best, sorted(scores), scores, edge


def pick_record(p, lr, wd, scores, edge) -> dict:
  """One pre-training's pick, with the validation accuracy of every value tried."""
  return {"pretrain_seed": p, "learning_rate": lr, "weight_decay": wd, "on_edge": bool(edge),
          "val_accuracy": {f"{v:g}": float(a) for v, a in sorted(scores.items())}}


def row_summary(picks) -> dict:
  """A strategy row's one-number summary of its pre-trainings' picks (`pick_record`):
  the most frequent learning rate and weight decay, whether any pick sat on an edge, and
  every value any pick tried (`lr_tried`: the config's `lr_grid` widened past its edges;
  tables written up to commit 9055374 call it `lr_grid`)."""
  return {"learning_rate": modal([q["learning_rate"] for q in picks]),
          "weight_decay": modal([q["weight_decay"] for q in picks]),
          "on_edge": any(q["on_edge"] for q in picks), "picks": picks,
          "lr_tried": sorted({float(v) for q in picks for v in q["val_accuracy"]})}


def modal(values):
  """The most frequent value (ties: the smallest), for a row's one-number summary."""
  values = sorted(values)
  return max(values, key=values.count)


def pooled_val(cells) -> float:
  """Mean validation accuracy over the runs of `cells`."""
  return float(np.mean([r["val_accuracy"] for cell in cells for r in cell["per_seed"]]))


def changes(picked) -> dict:
  """What a row changes, over the cells of its picks (one per pre-training): the most
  values any pick changed and every block one did (a pick of learning rate 0 changes
  nothing that the row's start did not)."""
  return {"changed_params": max(c["changed_params"] for c in picked),
          "changed_stats": max(c["changed_stats"] for c in picked),
          "changed_blocks": sorted({b for c in picked for b in c["changed_blocks"]})}
