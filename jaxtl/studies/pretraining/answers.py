"""The lecture's two open questions, answered in a sentence each from the pre-training
study's summary (`study.summarize`: {objective: {diversity: {setting: cell}}}, a cell's
accuracy with its 95% CI), so that docs/pretraining.md's answers are generated, never typed.

Two accuracies are told apart only when their difference exceeds the sum of their 95%
half-widths (the intervals do not overlap), a conservative test; otherwise they are
"within the CIs".
"""
import numpy as np

from jaxtl.studies.pretraining.study import SOURCES, TARGET_NAMES, setting_name, setting_target

LABEL_FREE = ("rotation", "simclr", "mae")  # objectives that never see a label
# What a digits dataset's labels name: USPS labels MNIST's ten digits, Fashion-MNIST has
# ten other classes. Whether the target's classes are the source's splits the labels answer.
CLASSES = {"mnist": "digits", "usps": "digits", "fashion_mnist": "clothes"}


def _pct(cell) -> str:
  return f"{100 * cell['accuracy']:.2f} +- {100 * cell['ci95']:.2f}"


def _compare(a, b) -> int:
  """+1 if cell a is above b beyond both CIs, -1 if below, 0 if within them."""
  gap = a["accuracy"] - b["accuracy"]
  return 0 if abs(gap) <= a["ci95"] + b["ci95"] else int(np.sign(gap))


def _source(dataset: str) -> str:
  return TARGET_NAMES.get(dataset, dataset.capitalize())


def labels(summary: dict, dataset: str = "omniglot") -> str:
  """Q1, do you need labels to pre-train? Supervised pre-training against the best
  label-free objective of each setting, and every pre-training against none."""
  groups = max({g for by_groups in summary.values() for g in by_groups}, key=int)
  cells = {o: by_groups.get(groups, {}) for o, by_groups in summary.items()}
  supervised, scratch = cells.get("supervised", {}), cells.get("scratch", {})
  free = [o for o in LABEL_FREE if cells.get(o)]
  settings = [s for s in supervised if all(s in cells[o] for o in free)]
  if not free or not settings:
    return ""
  best_free = {s: max(free, key=lambda o, s=s: cells[o][s]["accuracy"]) for s in settings}
  outcome = [_compare(supervised[s], cells[best_free[s]][s]) for s in settings]
  widest = max(settings, key=lambda s: abs(
      supervised[s]["accuracy"] - cells[best_free[s]][s]["accuracy"]))
  best = best_free[widest]
  text = (f"Do you need labels to pre-train? On {_source(dataset)}, supervised pre-training "
          f"leads the best label-free objective ({', '.join(free)}) beyond both 95% CIs in "
          f"{outcome.count(1)} of {len(settings)} settings, is within them in "
          f"{outcome.count(0)} and trails in {outcome.count(-1)}; the widest gap: "
          f"{setting_name(widest)}, supervised {_pct(supervised[widest])} against {best} "
          f"{_pct(cells[best][widest])}.")
  text += _by_classes(settings, outcome, dataset)
  if scratch:
    beats = {o: sum(_compare(cells[o][s], scratch[s]) > 0 for s in settings if s in scratch)
             for o in ["supervised"] + free}
    compared = sum(s in scratch for s in settings)
    text += (" Against no pre-training, settings won beyond the CIs: " + ", ".join(
        f"{o} {n} of {compared}" for o, n in beats.items()) + ".")
  return text


def _by_classes(settings, outcome, dataset: str) -> str:
  """The supervised-vs-label-free counts split into targets with the source's classes and
  targets with other classes (digits only: Omniglot's characters are all new)."""
  targets = [setting_target(s) for s in settings]
  same = [CLASSES.get(t) == CLASSES.get(dataset) for t in targets]
  if dataset not in CLASSES or all(same) or not any(same):
    return ""
  parts = []
  for kind, pick in (("its own classes", True), ("other classes", False)):
    names = sorted({TARGET_NAMES[t] for t, m in zip(targets, same) if m == pick})
    picked = [o for o, m in zip(outcome, same) if m == pick]
    parts.append(f"on {kind} ({', '.join(names)}) it leads in {picked.count(1)}, is "
                 f"within in {picked.count(0)} and trails in {picked.count(-1)} of "
                 f"{len(picked)}")
  return " By target: " + "; ".join(parts) + "."


def diversity(summary: dict, dataset: str = "omniglot") -> str:
  """Q2, does pre-training data need to be diverse? Each objective's accuracy from the
  most diverse pre-training set to the least (same number of images), averaged over the
  settings, and whether the masked objective degrades least (El-Nouby et al. 2021)."""
  unit = SOURCES.get(dataset, ("groups",))[0]
  drops = {}
  for objective, by_groups in summary.items():
    groups = sorted(by_groups, key=int)
    if objective == "scratch":  # the same network at every diversity: the floor, below
      continue
    if len(groups) < 2:
      continue
    most, least = by_groups[groups[-1]], by_groups[groups[0]]
    settings = [s for s in most if s in least]
    if not settings:
      continue
    gap = [most[s]["accuracy"] - least[s]["accuracy"] for s in settings]
    half = [np.hypot(most[s]["ci95"], least[s]["ci95"]) for s in settings]
    drops[objective] = (100 * float(np.mean(gap)),
                        100 * float(np.sqrt(np.sum(np.square(half)))) / len(settings),
                        groups[-1], groups[0], len(settings))
  if not drops:
    return ""
  _, _, most, least, n = next(iter(drops.values()))
  smallest = min(drops, key=lambda o: drops[o][0])
  lower = [o for o, (d, ci, *_) in drops.items() if d > ci]
  higher = [o for o, (d, ci, *_) in drops.items() if -d > ci]
  text = (f"Does pre-training data need to be diverse? On {_source(dataset)}, going from "
          f"{most} {unit} down to {least} (the same number of images) changes accuracy, "
          f"averaged over {n} setting{'s' if n > 1 else ''}, by: " + ", ".join(
              f"{o} {-d:+.1f} +- {ci:.1f} points" for o, (d, ci, *_) in drops.items())
          + f". Narrower data lowers it beyond the CIs for {', '.join(lower) or 'none'} and "
          f"raises it for {', '.join(higher) or 'none'}; {smallest} degrades least")
  if "mae" not in drops:
    text += "; the masked objective was not run, so El-Nouby et al.'s pattern is untested."
  elif smallest == "mae":
    text += ": the masked objective degrading least is El-Nouby et al.'s pattern, seen here too."
  else:
    d, ci = drops["mae"][:2]
    tied = abs(d - drops[smallest][0]) <= ci + drops[smallest][1]
    text += (f"; the masked objective's drop is {'within the CIs of' if tied else 'beyond'} "
             f"{smallest}'s, so El-Nouby et al.'s pattern (masked degrades least) "
             f"{'is not told apart here' if tied else 'does not appear here'}.")
  return text + _against_scratch(summary, drops, str(least), str(most))


def _against_scratch(summary, objectives, least: str, most: str) -> str:
  """How many settings each objective wins over no pre-training beyond the CIs, on the
  least and on the most diverse pre-training set."""
  scratch = summary.get("scratch", {}).get(least)
  if not scratch:
    return ""
  def wins(objective, groups):
    cells = summary[objective].get(groups, {})
    return sum(_compare(cells[s], scratch[s]) > 0 for s in scratch if s in cells)
  return (f" Settings won over no pre-training beyond the CIs, at {least} / {most}: "
          + ", ".join(f"{o} {wins(o, least)} / {wins(o, most)}" for o in objectives)
          + f" of {len(scratch)}.")


def answer(summary: dict, dataset: str = "omniglot") -> str:
  """The question a summary answers: diversity if it holds several, else labels."""
  several = any(len(by_groups) > 1 for by_groups in summary.values())
  return (diversity if several else labels)(summary, dataset)
