"""The second floor beside a study's own. `scratch` (no pre-training) keeps batch norm at
its initial statistics (0 and 1), while every pre-trained network's come from clean source
images; `scratch_bn` is the same random network normalised that way too, run apart into
`results/pretraining_VARIANT_floor` (`experiments.pretraining` with
`--config.objectives="('scratch_bn',)"`). `merge` shows it in a study's table; `sentence`
says how the two floors compare and which one the answers' gains are measured against."""
import numpy as np

from jaxtl import stats
from jaxtl.studies.pretraining.tables import setting_strategy


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
  and per setting whether `scratch_bn` is above, below or not told apart (paired
  intervals); `made_by`: where its row comes from; "" without both floors."""
  if "scratch_bn" not in summary or "scratch" not in summary:
    return ""
  most = max(summary["scratch"], key=int)
  scratch, normalised = summary["scratch"][most], summary["scratch_bn"][most]
  settings = [s for s in scratch if s in normalised and (
      not answer_on or setting_strategy(s) == answer_on)]
  if not settings:
    return ""
  values = lambda cell: np.asarray(cell.get("values", [cell["accuracy"]]), np.float64)
  diffs = [values(normalised[s]) - values(scratch[s]) for s in settings]
  if len({d.size for d in diffs}) != 1 or diffs[0].size < 2:
    return ""
  signs = []
  for d in diffs:
    e = stats.estimate(100 * d)
    signs.append(int(e.mean - e.ci95 > 0) - int(e.mean + e.ci95 < 0))
  overall = stats.estimate(100 * np.mean(diffs, 0))
  above, below = signs.count(1), signs.count(-1)
  if below > above:
    use = "the higher floor where they differ, so no gain here is measured from the lower one"
  elif above > below:
    use = ("the lower floor where they differ: against the floor normalised as they are, "
           "the gains would be smaller")
  else:
    use = "neither floor the higher more often"
  return (f"The floor normalised by clean source images, as every pre-trained network is "
          f"(scratch_bn{made_by and ', ' + made_by}), against the floor at batch norm's initial statistics (scratch), "
          f"over {overall.n_groups} seeds: {round(overall.mean, 1) + 0.0:+.1f} +- "
          f"{overall.ci95:.1f} points, averaged over the {len(settings)} settings; above in "
          f"{above}, below in {below}, not told apart in {len(settings) - above - below}. "
          f"Gains over no pre-training are measured from scratch: {use}.")
