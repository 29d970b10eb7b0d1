"""The pre-training study's tables: its cells summarised over seeds, named, tabulated and
plotted (`study.study` writes them; `jaxtl.studies.documents` and `answers` read them)."""
import numpy as np

from jaxtl import stats
from jaxtl.metrics import pyplot
from jaxtl.studies.pretraining.tuning import setting_label

# Pre-training dataset -> (what its diversity counts, how many there are).
SOURCES = {"omniglot": ("alphabets", 30), "mnist": ("classes", 10),
           "fashion_mnist": ("classes", 10)}
# Rows that need no pre-training data of the study: no pre-training (batch norm at its
# initial statistics, or at clean source images') and the ceiling.
LEVEL_FREE = ("scratch", "scratch_bn", "ceiling")
LABEL_FREE = ("rotation", "simclr", "mae", "masked_denoise")  # never see a label

def summarize(cells: dict, per_task: bool = False) -> dict:
  """{objective: {diversity: {setting: {accuracy, ci95, seeds, values, num_tasks}}}}: over
  seeds (`values`, in seed order), the mean with its 95% interval (`stats.estimate`; where
  every cell keeps its score on each of the same few-shot tasks, Omniglot's, the interval
  counts the tasks' draw too, crossed with the seeds); with one seed, the cell's
  own interval (over tasks, or binomial over the test set). `per_task`: also keep those
  scores, seeds x tasks, for the answers' paired intervals (`seed_values`)."""
  # Per-task scores serve every cell or none (one study, one rule): all keep as many.
  lengths = {len(c.get("per_task", ())) for c in cells.values()}
  crossed = len(lengths) == 1 and 0 not in lengths
  grouped = {}
  for key, cell in cells.items():
    objective, groups, seed, setting = key.split("_", 3)
    grouped.setdefault(objective.replace("-", "_"), {}).setdefault(int(groups[:-1]), {}).setdefault(
        setting, []).append((int(seed[1:]), cell))
  out = {}
  for objective, by_groups in grouped.items():
    for groups, by_setting in by_groups.items():
      for setting, seeds in by_setting.items():
        ordered = [c for _, c in sorted(seeds, key=lambda sc: sc[0])]
        values = [c["accuracy"] for c in ordered]
        tasks = [tuple(c["per_task"]) for c in ordered] if crossed else []
        e = stats.estimate(tasks if crossed else values, crossed=crossed)
        out.setdefault(objective, {}).setdefault(str(groups), {})[setting] = {
            "accuracy": float(np.mean(values)),
            "ci95": e.ci95 if len(values) > 1 else ordered[0]["ci95"],
            "seeds": len(values), "values": values,
            "num_tasks": len(tasks[0]) if crossed else 0,
            **({"per_task": tuple(tasks)} if crossed and per_task else {})}
  return out


def seed_values(cell: dict) -> np.ndarray:
  """A summary cell's scores per seed: seeds x tasks where it keeps them (`summarize`'s
  `per_task`; a difference of two such cells is then paired task by task too), else one
  accuracy per seed. `stats.estimate(..., crossed=True)` reads either."""
  return np.asarray(cell.get("per_task", cell.get("values", [cell["accuracy"]])), np.float64)


def matched(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray]:
  """Two cells' `seed_values`, paired as far as both allow: task by task where both keep
  the same tasks, else seed by seed (a floor run apart may keep tasks a study does not)."""
  va, vb = seed_values(a), seed_values(b)
  if va.shape == vb.shape:
    return va, vb
  return tuple(np.asarray(c.get("values", [c["accuracy"]]), np.float64) for c in (a, b))


STRATEGY_NAMES = {"ncm": "NCM", "linear_probe": "linear probe", "finetune": "fine-tune",
                  "lp_ft": "LP-FT", "cosine": "Baseline++"}
TARGET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "usps": "USPS"}


def _split(setting: str) -> tuple[str, str]:
  """"lp_ft_fashion_mnist100" -> ("lp_ft", "fashion_mnist100"); ("", setting) if no
  strategy of `STRATEGY_NAMES` leads it."""
  for strategy in STRATEGY_NAMES:
    if setting.startswith(strategy + "_"):
      return strategy, setting[len(strategy) + 1:]
  return "", setting


def setting_strategy(setting: str) -> str:
  """The transfer strategy of a setting ("lp_ft_usps100" -> "lp_ft"); "" if none."""
  return _split(setting)[0]


def setting_target(setting: str) -> str:
  """The classification target of a digits setting ("lp_ft_usps100" -> "usps"); "" for a
  few-shot setting."""
  task = _split(setting)[1]
  target = task.rstrip("0123456789")
  return target if target in TARGET_NAMES else ""


def setting_name(setting: str) -> str:
  """"linear_probe_5w1s" -> "linear probe, 5-way 1-shot"; "lp_ft_usps100" -> "LP-FT,
  USPS, 100 labels"."""
  strategy, task = _split(setting)
  if not strategy:
    return setting
  name = STRATEGY_NAMES[strategy]
  if task.endswith("s") and "w" in task:
    way, shot = task[:-1].split("w")
    return f"{name}, {way}-way {shot}-shot"
  target = task.rstrip("0123456789")
  return f"{name}, {TARGET_NAMES.get(target, target)}, {task[len(target):]} labels"


def _cell(c) -> str:
  return f"{100 * c['accuracy']:.2f} +- {100 * c['ci95']:.2f}" if c else ""


def format_table(summary: dict, dataset: str = "omniglot") -> str:
  """Test accuracy (%) +- 95% CI: with one diversity, one table, a row per setting and a
  column per objective; else one table per setting, a row per objective and a column per
  diversity."""
  settings = list(dict.fromkeys(s for o in summary.values() for a in o.values() for s in a))
  groups = sorted({int(a) for o in summary.values() for a in o})
  unit = SOURCES.get(dataset, ("groups",))[0]
  cells = [c for o in summary.values() for a in o.values() for c in a.values()]
  seeds = max((c["seeds"] for c in cells), default=1)
  tasks = min((c.get("num_tasks", 0) for c in cells), default=0)
  spread = (f"over {seeds} seeds crossed with {tasks} tasks" if seeds > 1 and tasks else
            f"over {seeds} seeds" if seeds > 1 else
            "over 600 tasks" if dataset == "omniglot" else "binomial over the test set")
  source = TARGET_NAMES.get(dataset, dataset.capitalize())
  where = ("Omniglot's evaluation alphabets" if dataset == "omniglot" else "the targets' test sets")
  if len(groups) == 1:
    lines = [f"Pre-trained on {source} ({groups[0]} {unit}) with each objective, scored on "
             f"{where}: test accuracy (%) +- 95% CI ({spread})\n",
             "| transfer | " + " | ".join(summary) + " |",
             "|---|" + "---:|" * len(summary)]
    for setting in settings:
      lines.append(f"| {setting_name(setting)} | " + " | ".join(
          _cell(by_groups.get(str(groups[0]), {}).get(setting))
          for by_groups in summary.values()) + " |")
    return "\n".join(lines)
  parts, shown_once = [], False
  for setting in settings:
    lines = [f"{setting_name(setting)}, pre-trained on {source}: test accuracy (%) +- 95% "
             f"CI ({spread}), by pre-training {unit} (same number of images)\n",
             "| pre-training | " + " | ".join(map(str, groups)) + " |",
             "|---|" + "---:|" * len(groups)]
    for objective, by_groups in summary.items():
      row = [by_groups.get(str(g), {}).get(setting) for g in groups]
      if objective in LEVEL_FREE and _constant(row):  # one run serves every level
        row = [None] * (len(groups) - 1) + row[-1:]
        shown_once = True
      lines.append(f"| {objective} | " + " | ".join(map(_cell, row)) + " |")
    parts.append("\n".join(lines))
  return "\n\n".join(parts) + (
      "\n\nA row with one value (no pre-training, the ceiling) does not depend on the "
      "pre-training data: one run per seed serves every level." if shown_once else "")




def _constant(row: list) -> bool:
  """Whether a row's cells are one cell repeated at every diversity level."""
  return len(row) > 1 and all(row) and all(c == row[-1] for c in row)


def plot(summary: dict, path: str, unit: str = "alphabets") -> bool:
  """Transfer accuracy against pre-training diversity, a panel per setting, a line per
  objective with its 95% CI."""
  plt = pyplot()
  if plt is None:
    return False
  settings = list(dict.fromkeys(s for o in summary.values() for a in o.values() for s in a))
  groups = sorted({int(a) for by_groups in summary.values() for a in by_groups})
  fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 4), squeeze=False)
  for ax, setting in zip(axes[0], settings):
    for objective, by_groups in summary.items():
      points = sorted((int(a), c[setting]) for a, c in by_groups.items() if setting in c)
      ax.errorbar([a for a, _ in points], [100 * c["accuracy"] for _, c in points],
                  yerr=[100 * c["ci95"] for _, c in points], fmt="-o", capsize=3,
                  markersize=4, label=objective)
    ax.set_xscale("log")
    ax.set_xticks(groups, [str(g) for g in groups])
    ax.set_xlabel(f"pre-training {unit} (same number of images)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(setting_name(setting))
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def _value(v) -> str:
  return f"{v:g}" if isinstance(v, float) else str(v)


def format_picks(tuning: dict, rows=(), untrained=None) -> str:
  """Each objective's settings as the study picked them on held-out source images
  (results.json's "tuning", `tuning.tune`): the pick, the values tried (after any
  widening) and the pick's proxy score, so a reader sees where in its grid it sits.
  `rows`: the study's table rows; supervised's pick serves the ceiling where it has none.
  `untrained`: the proxy's score before any training step (`tuning.untrained`), the level
  the picks' scores are read against."""
  lines = ["Settings picked on held-out source images (nearest class means on frozen "
           "features; never a target), before the study; the proxy is the pick's score at the "
           "study's pre-training length:\n",
           "| objective | pick | values tried | proxy (%) |", "|---|---|---|---:|"]
  for objective, t in tuning.items():
    label = setting_label(t["pick"])
    score = t.get("confirmed", {}).get(label, t.get("scores", {}).get(label))
    tried = "; ".join(f"{name} " + ", ".join(map(_value, values))
                      for name, values in sorted(t["grid"].items()))
    pick = ", ".join(f"{name} {_value(v)}" for name, v in sorted(t["pick"].items()))
    edge = f" (on the edge of {', '.join(t['on_edge'])})" if t.get("on_edge") else ""
    name = objective + (" (the ceiling's)" if objective == "supervised" and rows
                        and "supervised" not in rows else "")
    lines.append(f"| {name} | {pick}{edge} | {tried} | "
                 f"{'' if score is None else f'{100 * score:.2f}'} |")
  if untrained is not None:
    lines.append(f"| no training step (the level to read the proxy against) | | | "
                 f"{100 * untrained:.2f} |")
  return "\n".join(lines)
