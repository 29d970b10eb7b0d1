"""The second floor beside a study's own. `scratch` (no pre-training) keeps batch norm at
its initial statistics (0 and 1), while every pre-trained network's come from clean source
images; `scratch_bn` is the same random network normalised that way too, run apart into
`results/pretraining_VARIANT_floor` (`experiments.pretraining` with
`--config.objectives="('scratch_bn',)"`). `merge` shows it in a study's table; `sentence`
says how the two floors compare and which one the answers' gains are measured against."""
import numpy as np

from jaxtl import stats
from jaxtl.studies.pretraining.answers import compare_cells
from jaxtl.studies.pretraining.tables import LEVEL_FREE, matched, setting_strategy


def merge(summary: dict, floor: dict) -> dict:
  """`summary` with the `scratch_bn` row of `floor` (another study's summary) after its
  `scratch` row, at every level the study has (it needs no pre-training data), for the
  settings the study's `scratch` has."""
  rows = floor.get("scratch_bn")
  if not rows or "scratch" not in summary:
    return summary
  cells = rows[max(rows, key=int)]
  out = {}
  for objective, by_groups in summary.items():
    out[objective] = by_groups
    if objective == "scratch":
      out["scratch_bn"] = {g: {s: cells[s] for s in by_setting if s in cells}
                           for g, by_setting in by_groups.items()}
  return out


def sentence(summary: dict, answer_on: str = "", made_by: str = "") -> str:
  """The two floors compared over seeds, on the settings both have (those of `answer_on`
  alone, if given): the per-seed difference averaged over the settings with its t-interval,
  per setting whether `scratch_bn` is above, below or not told apart, and how many of the
  objectives' wins over `scratch` are wins over `scratch_bn` too (`answers.compare_cells`,
  the answers' own rule); `made_by`: where its row comes from; "" without both floors."""
  if "scratch_bn" not in summary or "scratch" not in summary:
    return ""
  most = max(summary["scratch"], key=int)
  scratch, normalised = summary["scratch"][most], summary["scratch_bn"][most]
  settings = [s for s in scratch if s in normalised and (
      not answer_on or setting_strategy(s) == answer_on)]
  if not settings:
    return ""
  signs = [compare_cells(normalised[s], scratch[s]) for s in settings]
  pairs = [matched(normalised[s], scratch[s]) for s in settings]
  if len({shape for pair in pairs for shape in (pair[0].shape, pair[1].shape)}) != 1 or len(
      pairs[0][0]) < 2:  # seeds that cannot be matched
    return ""
  overall = stats.estimate(100 * np.mean([a - b for a, b in pairs], 0), crossed=True)
  above, below = signs.count(1), signs.count(-1)
  # Each win over `scratch` (an objective at a level, on a setting), judged again against
  # `scratch_bn` by the same rule: how many would not be wins.
  wins = [(cells[s], normalised[s]) for objective, by_groups in summary.items()
          if objective not in LEVEL_FREE for cells in by_groups.values() for s in settings
          if s in cells and compare_cells(cells[s], scratch[s]) > 0]
  kept = sum(compare_cells(cell, floor) > 0 for cell, floor in wins)
  return (f"The floor normalised by clean source images, as every pre-trained network is "
          f"(scratch_bn{made_by and ', ' + made_by}), against the floor at batch norm's "
          f"initial statistics (scratch), over {overall.n_groups} seeds: "
          f"{round(overall.mean, 1) + 0.0:+.1f} +- {overall.ci95:.1f} points, averaged over "
          f"the {len(settings)} settings; above in {above}, below in {below}, not told apart "
          f"in {len(settings) - above - below}. Gains over no pre-training are measured from "
          f"scratch; of its {len(wins)} wins (an objective at a level, on a setting), "
          f"{kept} {'is also a win' if kept == 1 else 'are also wins'} over scratch_bn.")
