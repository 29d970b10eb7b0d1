"""The lecture's two open questions, answered in a sentence each from the pre-training
study's summary (`tables.summarize`: {objective: {diversity: {setting: cell}}}, a cell's
accuracy with its 95% CI and its per-seed `values`), so that docs/pretraining.md's
answers are generated, never typed.

One rule, `jaxtl.stats`'s: two rows are told apart when the 95% t-interval of their
difference, taken seed by seed (`stats.paired`: a seed is one pre-training set's draw and
one network's initialisation, shared by every objective and diversity), excludes 0;
otherwise they are "not told apart". Where the cells keep each seed's score on the same
few-shot tasks (Omniglot's, `tables.seed_values`), the difference is paired task by task
too and its interval counts the tasks' draw, crossed with the seeds (`crossed=True`, which
on one value per seed is the seeds' interval). A study of one seed has no such interval:
its rows are told apart only when their own intervals (over tasks or test images) do not
overlap.
"""
import numpy as np

from jaxtl import stats
from jaxtl.studies.pretraining import el_nouby
from jaxtl.studies.pretraining.tables import (LABEL_FREE, LEVEL_FREE, SOURCES, TARGET_NAMES,
                                              matched, seed_values, setting_name,
                                              setting_target)
from jaxtl.studies.pretraining.tuning import setting_label
# What a digits dataset's labels name: USPS labels MNIST's ten digits, Fashion-MNIST has
# ten other classes. Whether the target's classes are the source's splits the labels answer.
CLASSES = {"mnist": "digits", "usps": "digits", "fashion_mnist": "clothes"}


def _pct(cell) -> str:
  return f"{100 * cell['accuracy']:.2f} +- {100 * cell['ci95']:.2f}"


def _sign(low: float, high: float) -> int:
  return 1 if low > 0 else -1 if high < 0 else 0


def compare_cells(a, b) -> int:
  """+1 if cell a is above b (the rule in the module docstring), -1 if below, 0 if not
  told apart."""
  va, vb = matched(a, b)
  if len(va) > 1 and va.shape == vb.shape:
    d = stats.paired(va, vb, crossed=True)
    return _sign(d.mean - d.ci95, d.mean + d.ci95)
  gap = a["accuracy"] - b["accuracy"]
  return _sign(gap - a["ci95"] - b["ci95"], gap + a["ci95"] + b["ci95"])


def _record(cells, scratch) -> str:
  """"won-lost": of the settings in both, how many `cells` are above `scratch`'s, how
  many below (`compare_cells`)."""
  signs = [compare_cells(cells[s], scratch[s]) for s in scratch if s in cells]
  return f"{signs.count(1)}-{signs.count(-1)}"


def _signed(points: float) -> str:
  """"+1.3", and "+0.0" for what rounds to zero from below (never "-0.0")."""
  return f"{round(points, 1) + 0.0:+.1f}"


def _source(dataset: str) -> str:
  return TARGET_NAMES.get(dataset, dataset.capitalize())


def labels(summary: dict, dataset: str = "omniglot", tuned: bool = True) -> str:
  """Q1, do you need labels to pre-train? Supervised pre-training against the label-free
  objectives, first on targets whose classes the source's labels do not name, then on
  those they do: over seeds averaged over the settings (`_verdict`), then per setting
  (`_outcome`); every pre-training against none. `tuned`: whether the study picked its
  settings on labelled images (issue 30's protocol), which the answer then says."""
  groups = max({g for by_groups in summary.values() for g in by_groups}, key=int)
  cells = {o: by_groups.get(groups, {}) for o, by_groups in summary.items()}
  supervised, scratch = cells.get("supervised", {}), cells.get("scratch", {})
  free = [o for o in LABEL_FREE if cells.get(o)]
  settings = [s for s in supervised if all(s in cells[o] for o in free)]
  if not free or not settings:
    return ""
  best_free = {s: max(free, key=lambda o, s=s: cells[o][s]["accuracy"]) for s in settings}
  outcome = {s: _outcome(cells, free, s, best_free[s]) for s in settings}
  text = (f"Do you need labels to pre-train? On {_source(dataset)}, supervised pre-training "
          f"against the best label-free objective ({', '.join(free)}) of each setting")
  parts = []
  for kind, chosen in _by_classes(settings, dataset):
    counts = [outcome[s] for s in chosen]
    widest = max(chosen, key=lambda s: abs(
        supervised[s]["accuracy"] - cells[best_free[s]][s]["accuracy"]))
    parts.append(f"{kind}: {_verdict(cells, free, chosen)}leads in {counts.count(1)}, is "
                 f"not told apart in {counts.count(0)} and trails in {counts.count(-1)} of "
                 f"{len(chosen)} settings (widest gap: {setting_name(widest)}, supervised "
                 f"{_pct(supervised[widest])} against {best_free[widest]} "
                 f"{_pct(cells[best_free[widest]][widest])})")
  text += ", " + "; ".join(parts) + "." + (_labels_used(dataset) if tuned else "")
  if scratch:
    shared = {s: scratch[s] for s in settings if s in scratch}
    text += (f" Against no pre-training, settings won-lost (of {len(shared)}): " + ", ".join(
        f"{o} {_record(cells[o], shared)}" for o in ["supervised"] + free) + ".")
  ceiling = cells.get("ceiling", {})
  if ceiling and scratch:
    text += _between(cells, free, settings, dataset)
  return text


def _labels_used(dataset: str) -> str:
  """Which labels the label-free rows still depended on: their settings were picked on
  the source's labels, the transfer's on labelled target-like images."""
  own = (", on a target of the source's own dataset its very training labels"
         if dataset in CLASSES else "")
  transfer = ("each transfer cell's learning rate on other labelled training images of the "
              "target" if dataset in CLASSES else
              "the few-shot steps and step sizes on labelled validation characters")
  return (" No row is label-free end to end: every objective's settings were picked by "
          f"nearest class means with the source's labels{own}, and {transfer}.")


def _outcome(cells, free, setting, best_free) -> int:
  """+1 if supervised pre-training leads every label-free objective at `setting`, -1 if
  one leads it, 0 otherwise: `jaxtl.stats.verdict` over the seeds (paired, Holm-corrected
  both ways), the one rule. One seed: against the best label-free objective by mean, by
  the cells' own intervals (`compare_cells`)."""
  rows = {o: seed_values(cells[o][setting]) for o in ["supervised"] + free}
  if len(rows["supervised"]) < 2:
    return compare_cells(cells["supervised"][setting], cells[best_free][setting])
  label = stats.verdict(rows, "supervised", list(rows), chance=0.0, crossed=True).label
  return {"reproduced": 1, "not reproduced": -1}.get(label, 0)


VERDICTS = {"reproduced": "ahead of every label-free objective",
            "not distinguishable": "equal to the label-free objectives within a point",
            "inconclusive": "not told apart from the label-free objectives"}


def _verdict(cells, free, chosen) -> str:
  """`jaxtl.stats.verdict` on "supervised is best", each row a seed's mean over the
  `chosen` settings (one sample per seed: settings of one network are not independent);
  "" with one seed."""
  rows = {o: np.mean([seed_values(cells[o][s]) for s in chosen], 0)
          for o in ["supervised"] + free}
  if len(rows["supervised"]) < 2:
    return ""
  v = stats.verdict(rows, "supervised", list(rows), chance=0.0, crossed=True)
  meaning = VERDICTS.get(v.label, f"behind {v.best}" if v.label == "not reproduced" else v.label)
  return f"over seeds, averaged over these settings, {meaning} (`jaxtl.stats`); per setting it "


def _by_classes(settings, dataset: str) -> list:
  """[(kind, settings)]: Omniglot's characters are all new; a digits target's classes
  are the source's (its labels seen in pre-training: MNIST's are the very training labels
  of an MNIST target) or other ones."""
  if dataset not in CLASSES:
    return [("on characters never seen in pre-training", settings)]
  targets = {s: setting_target(s) for s in settings}
  out = []
  other = [s for s in settings if CLASSES.get(targets[s]) != CLASSES[dataset]]
  same = [s for s in settings if CLASSES.get(targets[s]) == CLASSES[dataset]]
  names = lambda chosen: ", ".join(sorted({TARGET_NAMES[targets[s]] for s in chosen}))
  if other:
    out.append((f"on targets of other classes ({names(other)})", other))
  if same:
    out.append((f"on targets of the source's own classes ({names(same)}), which "
                "supervised pre-training learnt from the source's labels", same))
  return out


def _between(cells, free, settings, dataset: str) -> str:
  """Each pre-training's place between no pre-training (0%) and the ceiling (100%), per
  seed (its gain over no pre-training over the ceiling's, each averaged over the
  settings), then a t-interval over seeds; targets of the source's own classes apart
  from the others; a study's own dataset as target left out, where the ceiling is the
  supervised row itself (the same images, labels, seed and setting)."""
  scratch, ceiling = cells["scratch"], cells["ceiling"]
  # Settings where the ceiling is 2 points or more above the floor: below that a place
  # between them is noise.
  usable = [s for s in settings if s in scratch and s in ceiling and
            setting_target(s) != dataset and
            ceiling[s]["accuracy"] - scratch[s]["accuracy"] >= 0.02]
  own = lambda s: CLASSES.get(setting_target(s)) == CLASSES[dataset]
  groups = ([("other classes", [s for s in usable if not own(s)]),
             ("the source's own classes", [s for s in usable if own(s)])]
            if dataset in CLASSES else [("every target", usable)])
  def gain(objective, chosen):  # per seed (a ratio of task-level gains would be noise)
    return np.mean([np.subtract(cells[objective][s]["values"], scratch[s]["values"])
                    for s in chosen], 0)
  def place(objective, chosen):
    e = stats.estimate(100 * np.atleast_1d(gain(objective, chosen) / gain("ceiling", chosen)))
    return f"{e.mean:.0f}%" + (f" +- {e.ci95:.0f}" if e.n_groups > 1 else "")
  parts = [f"on {kind} ({len(chosen)} setting{'s' if len(chosen) > 1 else ''}): " + ", ".join(
      f"{o} {place(o, chosen)}" for o in ["supervised"] + free) for kind, chosen in groups
      if chosen]
  if not parts:
    return ""
  return (" Between no pre-training (0%) and the ceiling, supervised pre-training on the "
          "target's own training set (100%), per seed over the settings where the ceiling "
          "is 2 points or more above and is not the supervised row itself: "
          + "; ".join(parts) + ".")


def _drops(by_groups: dict):
  """(per-seed drop in points from the most diverse set to the least, averaged over the
  settings both have; the most, the least, the settings' number), or None."""
  groups = sorted(by_groups, key=int)
  if len(groups) < 2:
    return None
  most, least = by_groups[groups[-1]], by_groups[groups[0]]
  settings = [s for s in most if s in least]
  if not settings:
    return None
  drop = np.mean([seed_values(most[s]) - seed_values(least[s]) for s in settings], 0)
  return 100 * np.atleast_1d(drop), groups[-1], groups[0], len(settings)


def diversity(summary: dict, dataset: str = "omniglot") -> str:
  """Q2, does pre-training data need to be diverse? Each objective's accuracy from the
  most diverse pre-training set to the least (same number of images): per seed, the
  drop averaged over the settings, then a t-interval over seeds; which label-free
  objective that learnt degrades least, only where the others' drops are larger beyond
  their two-sided paired intervals (Holm: the least is chosen by the data); and El-Nouby
  et al.'s claim (2021), stated before the data, by the one symmetric rule (`el_nouby.claim`)."""
  unit = SOURCES.get(dataset, ("groups",))[0]
  drops = {o: d for o, by_groups in summary.items()
           if o not in LEVEL_FREE and (d := _drops(by_groups)) is not None}
  if not drops:
    return ""
  _, most, least, n = next(iter(drops.values()))
  seeds = len(next(iter(drops.values()))[0])
  est = {o: stats.estimate(d[0], crossed=True) if seeds > 1 else None
         for o, d in drops.items()}
  shown = {o: (f"{_signed(-e.mean)} +- {e.ci95:.1f}" if e else _signed(-np.mean(drops[o][0])))
           for o, e in est.items()}
  text = (f"Does pre-training data need to be diverse? On {_source(dataset)}, going from "
          f"{most} {unit} down to {least} (the same number of images) changes accuracy, "
          f"averaged over {n} setting{'s' if n > 1 else ''} per seed"
          f"{f', over {seeds} seeds' if seeds > 1 else ' (one seed: no interval)'}, by: "
          + ", ".join(f"{o} {v} points" for o, v in shown.items()) + ".")
  if seeds < 2:
    return text + " With one seed no drop is told apart from another."
  lower = [o for o, e in est.items() if e.mean - e.ci95 > 0]
  higher = [o for o, e in est.items() if e.mean + e.ci95 < 0]
  text += (f" Narrower data lowers it beyond the interval for {', '.join(lower) or 'none'}"
           f" and raises it for {', '.join(higher) or 'none'}.")
  # Which label-free objective degrades least (supervised's labels are a second knob),
  # among those that learnt something: a small drop from no gain is no robustness.
  free = [o for o in drops if o in LABEL_FREE]
  if len(free) < 2:  # nothing to compare
    return text + _against_scratch(summary, drops, str(least), str(most))
  learnt = [o for o in free if _learnt(summary, o, most)]
  idle = [o for o in free if o not in learnt]
  if idle:
    text += (f" Left out of which degrades least, as not ahead of no pre-training beyond the "
             f"interval on the most diverse data: {', '.join(idle)}.")
  if len(learnt) > 1:
    smallest = min(learnt, key=lambda o: est[o].mean)
    others = [o for o in learnt if o != smallest]
    # The smallest drop is chosen by the data, so each comparison with it is two-sided
    # (one-sided at alpha / 2), Holm over the others.
    diff = {o: stats.paired(drops[o][0], drops[smallest][0], crossed=True) for o in others}
    p = [stats.one_sided_p(diff[o]) for o in others]
    tied = [o for o, r in zip(others, stats.holm(p, alpha=0.025)) if not r]
    if not tied:
      text += (f" Of the label-free objectives that learnt, {smallest} degrades least, "
               "beyond the paired intervals (two-sided, Holm).")
    else:
      # The resolution of the widest of those comparisons, at Holm's strictest step.
      needed = max(stats.detectable(diff[o], len(others), alpha=0.025) for o in tied)
      text += (f" Of the label-free objectives that learnt, the smallest drop, {smallest}'s, "
               f"is not told apart from {el_nouby.theirs(tied)} (two-sided; a difference had to "
               f"exceed about {needed:.1f} points): none degrades least here.")
  else:
    text += (f" {f'Only {learnt[0]}' if learnt else 'None'} learnt, so which degrades least "
             "is not asked.")
  return text + el_nouby.claim(summary, drops, learnt, idle) + _against_scratch(
      summary, drops, str(least), str(most))


def _learnt(summary, objective: str, groups: str) -> bool:
  """Whether `objective` is ahead of no pre-training beyond the paired interval over seeds
  (each seed's gain averaged over the settings) at `groups`; True when there is nothing
  to compare with (no `scratch` row, or one seed)."""
  scratch, cells = summary.get("scratch", {}).get(groups), summary[objective].get(groups, {})
  settings = [s for s in (scratch or {}) if s in cells]
  if not settings or cells[settings[0]]["seeds"] < 2:
    return True
  gain = np.mean([seed_values(cells[s]) - seed_values(scratch[s]) for s in settings], 0)
  e = stats.estimate(gain, crossed=True)
  return e.mean - e.ci95 > 0


def budget(tuning: dict, steps: int, full: int) -> str:
  """How much each objective's pick gained on the tuning's proxy from its short runs
  (`steps`) to the study's pre-training length (`full`), from results.json's "tuning":
  an objective still gaining there is under-trained at this budget, and the answers hold
  for this budget only."""
  gains = {}
  for objective, t in tuning.items():
    name = setting_label(t["pick"])
    if name in t.get("confirmed", {}) and name in t.get("scores", {}):
      gains[objective] = 100 * (t["confirmed"][name] - t["scores"][name])
  if not gains:
    return ""
  return (f"How much each objective's pick still gained on the tuning's proxy (nearest "
          f"class means on held-out source images) from {steps:,} to {full:,} "
          "steps of pre-training " + ", ".join(f"{o} {g:+.1f}" for o, g in gains.items())
          + " points (one run each); an objective still gaining there is under-trained at "
          "this budget, and the answers above hold for this budget.")


def _against_scratch(summary, objectives, least: str, most: str) -> str:
  """Each objective's gain over no pre-training on the least and on the most diverse
  pre-training set (each seed's mean over the settings, then a t-interval over seeds: a
  small drop from a small gain is no sign of robustness), and how many settings it wins
  and loses."""
  scratch = summary.get("scratch", {}).get(least)
  if not scratch:
    return ""
  def gain(objective, groups):
    cells = summary[objective].get(groups, {})
    shared = [s for s in scratch if s in cells]
    if not shared:
      return "n/a"
    e = stats.estimate(100 * np.atleast_1d(np.mean(
        [seed_values(cells[s]) - seed_values(scratch[s]) for s in shared], 0)), crossed=True)
    return _signed(e.mean) + (f" +- {e.ci95:.1f}" if e.n_groups > 1 else "")
  return (f" Gain over no pre-training in points, at {least} / {most} (each seed's mean "
          "over the settings): " + ", ".join(f"{o} {gain(o, least)} / {gain(o, most)}"
                                             for o in objectives)
          + f". Settings won-lost against no pre-training (of {len(scratch)}), at {least} / "
          f"{most}: " + ", ".join(f"{o} {_record(summary[o].get(least, {}), scratch)} / "
                                  f"{_record(summary[o].get(most, {}), scratch)}"
                                  for o in objectives) + ".")


def answer(summary: dict, dataset: str = "omniglot", tuned: bool = True) -> str:
  """The question a summary answers: diversity if it holds several, else labels."""
  several = any(len(by_groups) > 1 for by_groups in summary.values())
  return diversity(summary, dataset) if several else labels(summary, dataset, tuned)
