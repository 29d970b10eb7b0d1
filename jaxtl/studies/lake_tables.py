"""Lake et al.'s one-shot challenge (issue 32): the Omniglot runs on Lake's split in one
table with the published rows, paired tables of runs scored on the same tasks, Lake's
runs against drawers at random, and both protocols side by side for the README."""
import os

import numpy as np

from jaxtl import stats
from jaxtl.data import lake_runs
from jaxtl.meta import tasks
from jaxtl.report import find_runs, kind_of
from jaxtl.studies import shots
from jaxtl.studies.meta_tables import meta_iterations, omniglot_cells
from jaxtl.studies.published import PUBLISHED_LAKE, PUBLISHED_MAML


def lake_cells(runs) -> dict:
  """{training run folder: {(eval_split, test_tasks): result}} of the Omniglot runs on
  Lake et al.'s split: a training run's own test, and its `meta_eval` re-evaluations
  (sub-folders of the run) under other task kinds or on the validation alphabets; those
  fine-tuned on the support (`support_steps`) under the folder and their setting."""
  cells = {}
  for name, r in runs:
    c = r["config"]
    if kind_of(r) == "shots":
      for folder, key, result in _shots_cells(name, r):
        cells.setdefault(folder, {})[key] = result
      continue
    if (kind_of(r) != "meta" or c.get("class_split") != "lake" or
        "test_accuracy" not in r["metrics"] or (c["way"], c["test_shot"]) != (20, 1)):
      continue
    folder = os.path.dirname(name) if r.get("evaluated_by") == "experiments.meta_eval" else name
    if c.get("support_steps"):  # another test-time adaptation of the run: a row of its own
      folder += f" + support fine-tuning, {c['support_steps']} Adam steps of {c['support_lr']:g}"
    # batch norm other than transductive: a column of its own
    key = (c.get("eval_split", "test"), c.get("test_tasks", "random"),
           c.get("batch_norm", "transductive"))
    if "test_accuracy_per_task" in cells.get(folder, {}).get(key, {}).get("metrics", {}):
      continue  # a re-evaluation that kept each task's score: the same number, and more
    cells.setdefault(folder, {})[key] = r
  return cells


def _shots_cells(name: str, r: dict) -> list:
  """(row, column key, result) of a shot sweep (`experiments.shots`) on Lake's split: each
  transfer baseline's 20-way 1-shot cell that kept each task's score, as a meta run's
  result (its tasks' config, its test metrics), in the columns of the transductive rows
  though it normalises with the pre-training's statistics (each query on its own; the
  table's caption says so). The row is the sweep's parent folder
  (with the baseline if the sweep ran several), so that sweeps of one pre-training on
  other test tasks, in sibling folders, fill one row's columns."""
  c = r["config"]
  baselines = tuple(b for b in c.get("baselines", ()) if b in shots.BASELINE_NAMES)
  if c["tasks"].get("class_split") != "lake":
    return []
  found = []
  for baseline in baselines:
    cell = r["metrics"].get(f"{baseline}_20w1s", {})
    if "per_task" not in cell:
      continue
    config = {k: v for k, v in c["tasks"].items() if k != "algorithm"}  # it trained none
    config.update(way=20, test_shot=1, test_query=c["query"], eval_split="test",
                  baseline=baseline, batch_norm="running",
                  pretrain_steps=c["pretrain"]["num_steps"], val_tasks=c["val_tasks"])
    metrics = {"test_accuracy": cell["accuracy"], "test_accuracy_ci95": cell["ci95"],
               "test_accuracy_per_task": cell["per_task"]}
    row = os.path.dirname(name) + (f", {baseline}" if len(baselines) > 1 else "")
    found.append((row, ("test", config["test_tasks"], "transductive"),
                  {"config": config, "metrics": metrics}))
  return found


# The fields that choose the test tasks: runs equal in them were scored on the same tasks.
# (eval_batch too: each chunk of tasks is drawn from its own key.)
_TASK_FIELDS = ("dataset", "class_split", "split_seed", "eval_seed", "eval_tasks", "eval_batch",
                "way", "test_shot", "test_query", "test_tasks", "num_val_alphabets", "eval_split")


def _units(kind: str, per_task) -> np.ndarray:
  """The independent units of a column's scores: its tasks, or, for Lake's fixed tasks
  (whose two runs per alphabet share their characters), its 10 alphabets, each the mean
  of its tasks."""
  per_task = np.asarray(per_task, float)
  if kind not in tasks.LAKE_TASKS:
    return per_task
  alphabet = lake_runs.alphabet_index("runs" if kind == "lake_runs" else "all")
  return np.array([per_task[alphabet == a].mean() for a in range(len(lake_runs.ALPHABETS))])


def _paired_rows(cells) -> list:
  """Per set of tasks (test and validation alphabets, Lake's fixed tasks), a table of
  paired differences between the runs scored on the same within-alphabet tasks, each
  task's score kept: the row's error minus the column's, unit by unit (`_units`: tasks,
  or Lake's alphabets; `jaxtl.stats.paired`)."""
  lines = []
  for split, kind, where in (
      ("test", "alphabet", "within-alphabet test tasks"),
      ("val", "alphabet", "within-alphabet validation tasks"),
      ("test", "lake_runs", "20 runs of Lake et al."),
      ("test", "lake_drawers",
       "560 tasks of Lake et al.'s characters, every ordered pair of their drawers")):
    key = split, kind, "transductive"
    scored = {f: runs[key] for f, runs in cells.items()
              if "test_accuracy_per_task" in runs.get(key, {}).get("metrics", {})}
    names = sorted(scored)
    same_tasks = lambda a, b: all(scored[a]["config"].get(f) == scored[b]["config"].get(f)
                                  for f in _TASK_FIELDS)
    if not any(same_tasks(a, b) for i, a in enumerate(names) for b in names[:i]):
      continue
    error = lambda f: 1 - _units(key[1], scored[f]["metrics"]["test_accuracy_per_task"])
    n = len(scored[names[0]]["metrics"]["test_accuracy_per_task"])
    over = ("the tasks" if key[1] not in tasks.LAKE_TASKS else
            f"the {len(lake_runs.ALPHABETS)} alphabets, each the mean of its tasks")
    count = "" if key[1] in tasks.LAKE_TASKS else f"{n} "
    lines += ["", f"Paired over the same {count}{where}: error of the row minus error of "
              f"the column, points (t-interval over {over}); in bold where "
              "the interval excludes 0, uncorrected for the comparisons. The training runs "
              "are fixed and the tasks come from these alphabets and drawers, so neither "
              "training's randomness nor another draw of alphabets is in the intervals.", "",
              "| row minus column | " + " | ".join(str(j + 1) for j in range(len(names) - 1))
              + " |", "|---|" + "---:|" * (len(names) - 1)]
    for i, a in enumerate(names):
      cells_ = []
      for b in names[:len(names) - 1]:
        if names.index(b) >= i or not same_tasks(a, b):
          cells_.append("")
          continue
        d = stats.paired(error(a), error(b))
        text = stats.format_estimate(d, signed=True)
        cells_.append(f"**{text}**" if abs(d.mean) > d.ci95 else text)
      lines.append(f"| {i + 1} `{a}` | " + " | ".join(cells_) + " |")
  return lines


def _runs_against_drawer_pairs(cells) -> list:
  """Per row scored on both: per alphabet, its two runs' mean error minus the mean error
  of the same characters under every other ordered pair of the runs' drawers
  (`lake_drawers` less the runs' own pairs), t-interval over the 10 alphabets: whether
  the runs' drawers are harder or easier than drawers at random."""
  own = {(r.alphabet, r.support_drawer, r.query_drawer) for r in lake_runs.tasks("runs")}
  others = np.array([(t.alphabet, t.support_drawer, t.query_drawer) not in own
                     for t in lake_runs.tasks("all")])
  rows = []
  for folder in sorted(cells):
    runs, every = (cells[folder].get(("test", k, "transductive"), {}).get("metrics", {})
                   for k in ("lake_runs", "lake_drawers"))
    if "test_accuracy_per_task" not in runs or "test_accuracy_per_task" not in every:
      continue
    pair_error = np.where(others, 1 - np.asarray(every["test_accuracy_per_task"]), np.nan)
    pair_error = np.nanmean(pair_error.reshape(len(lake_runs.ALPHABETS), -1), axis=1)
    d = stats.paired(1 - _units("lake_runs", runs["test_accuracy_per_task"]), pair_error)
    text = stats.format_estimate(d, signed=True)
    wrong = round(400 * (1 - runs["test_accuracy"]))
    rows.append(f"| `{folder}` | {wrong} | "
                f"{'**' + text + '**' if abs(d.mean) > d.ci95 else text} |")
  if not rows:
    return []
  return ["", "Lake's runs against drawers at random: per alphabet, its two runs' error minus "
          "the error of the same characters under the other 54 ordered pairs of the runs' 8 "
          "drawers, points (t-interval over the 10 alphabets; in bold where it excludes 0); "
          "and each row's errors on the runs, of 400 queries.", "",
          "| run | errors of 400 | runs minus the other drawer pairs |",
          "|---|---:|---:|"] + rows


def _error(r) -> str:
  """Error and its 95% CI, over the tasks, or over Lake's alphabets for his fixed tasks."""
  m, kind = r["metrics"], r["config"].get("test_tasks", "random")
  if kind not in tasks.LAKE_TASKS:
    return f"{100 * (1 - m['test_accuracy']):.1f} ± {100 * m['test_accuracy_ci95']:.1f}"
  units = _units(kind, m["test_accuracy_per_task"])
  return f"{100 * (1 - units.mean()):.1f} ± {100 * stats.ci95(units):.1f}"


def lake_table(root: str) -> str:
  """Lake et al.'s one-shot challenge: 20-way 1-shot error (%, ± 95% CI over the tasks)
  on the evaluation alphabets, tasks within one alphabet (support and query by different
  drawers) and, for comparison, of any characters of those alphabets; the published rows
  first. A run's training is named by its algorithm, its training tasks and length."""
  cells = lake_cells(find_runs(root))
  if not cells:
    return ""
  lines = ["20-way 1-shot error, % (± 95% CI over the tasks): on the 20 evaluation alphabets, "
           "tasks within one alphabet (support and query by different drawers) or of any "
           "of their characters; Lake et al.'s own 20 runs (within one alphabet, 20 queries "
           "each), and the runs' characters with every ordered pair of the runs' 8 drawers "
           "(560 tasks), their CI over the runs' 10 alphabets (two runs each, on the same "
           "characters); on the 5 background alphabets held out for validation, within one. "
           "Batch norm over each task's support and queries together (transductive), but "
           "in the column that normalises with the support set alone"
           + (" and in the transfer baselines' rows, which keep their pre-training's "
              "statistics (each query on its own)" if any(
                  "baseline" in r["config"] for runs in cells.values() for r in runs.values())
              else "") + ".", "",
           "| method | meta-training | within one alphabet | any characters | "
           "Lake's 20 runs | Lake's 20 runs, batch norm from the support set | their "
           "characters, every drawer pair | validation alphabets, within one |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
  lines += [f"| {who} | | | | {error} | | | |" for who, error in PUBLISHED_LAKE]
  for folder in sorted(cells):
    runs = cells[folder]
    trained = min(runs.values(), key=lambda r: r.get("evaluated_by") == "experiments.meta_eval")
    c = trained["config"]
    if c.get("ensemble"):  # jaxtl.meta.ensemble: no training of its own
      name = "ensemble"
      tta = c.get("test_affine") or {"views": 1}
      training = (f"{len(c['ensemble'])} runs' training (the rows named), class "
                  "probabilities averaged over "
                  + ", ".join(f"`{os.path.basename(m.rstrip('/'))}`" for m in c["ensemble"]))
      if tta["views"] > 1:
        training += (f", each on {tta['views']} copies of the task, warped but the first "
                     f"(rotation up to {tta['rotate_deg']:g} degrees, scale "
                     f"{tta['scale'][0]:g}-{tta['scale'][1]:g}, shift up to "
                     f"{tta['translate']:g})")
    elif c.get("baseline"):  # a shot sweep's transfer baseline (`_shots_cells`)
      name = shots.BASELINE_NAMES[c["baseline"]]
      training = (f"none: a classifier pre-trained {c['pretrain_steps']:,} steps on the "
                  "background characters but the validation alphabets' (with rotations); "
                  f"steps and step size picked on {c['val_tasks']} validation tasks")
    else:
      name = c["algorithm"]
      warped = tasks.affine_is_on(**(c.get("train_affine") or {}))
      training = (f"{meta_iterations(trained):,} it. x {c['meta_batch']} "
                  f"{c.get('train_way') or c['way']}-way {c['shot']}-shot "
                  f"{'within-alphabet' if c.get('train_tasks') == 'alphabet' else 'random'} "
                  f"tasks, {c['query']} {'query' if c['query'] == 1 else 'queries'} a class"
                  + (", affine warps" if warped else ""))
    get = lambda split, kind, bn="transductive": (_error(runs[split, kind, bn])
                                                  if (split, kind, bn) in runs else "")
    lines.append(f"| {name}, jaxtl (`{folder}`) | {training} | "
                 f"{get('test', 'alphabet')} | {get('test', 'random')} | "
                 f"{get('test', 'lake_runs')} | {get('test', 'lake_runs', 'support')} | "
                 f"{get('test', 'lake_drawers')} | {get('val', 'alphabet')} |")
  return "\n".join(lines + _paired_rows(cells) + _runs_against_drawer_pairs(cells))


def _plain(c: dict, algorithm: str) -> bool:
  """Whether a Lake-split run is `algorithm` trained as the first rows were: random
  episodes of the test's way, no warps, no test-time changes, the first training seed."""
  return (c.get("algorithm") == algorithm and not c.get("ensemble") and not c.get("baseline")
          and c.get("seed", 0) == 0
          and c.get("train_tasks", "random") == "random" and not c.get("train_way")
          and not tasks.affine_is_on(**(c.get("train_affine") or {}))
          and not c.get("support_steps"))


# The README's rows: (name, MAML-split algorithm or baseline, which Lake-split row).
_PROTOCOL_ROWS = (
    ("ProtoNets, jaxtl", "protonet", lambda c: _plain(c, "protonet")),
    ("MAML, jaxtl", "maml", lambda c: _plain(c, "maml")),
    ("black box, jaxtl", "blackbox", lambda c: _plain(c, "blackbox")),
    ("Baseline++ (cosine head), jaxtl", "cosine", lambda c: c.get("baseline") == "cosine"),
    ("ensemble of 4 ProtoNets runs, jaxtl", None,
     lambda c: bool(c.get("ensemble")) and (c.get("test_affine") or {"views": 1})["views"] == 1),
)


def protocols_table(root: str) -> str:
  """Omniglot 20-way 1-shot error (%) on both protocols, the published numbers beside
  jaxtl's: MAML's split (characters at random from all 50 alphabets), and Lake's (the 20
  evaluation alphabets, tasks within one alphabet, 600 at random and his own 20 runs)."""
  runs = find_runs(root)
  lake = lake_cells(runs)
  if not lake:
    return ""
  maml_split = {key[0]: r for key, (_, r) in omniglot_cells(runs).items()
                if key[1:] == ("conv4", 20, 1)}
  maml_split.update({  # the shot sweep's baselines on MAML's split
      name.rpartition("_")[0]: {"config": {}, "metrics": {"test_accuracy": cell["accuracy"],
                                            "test_accuracy_ci95": cell["ci95"]}}
      for _, r in runs if kind_of(r) == "shots"
      and r["config"]["tasks"].get("class_split", "maml") == "maml"
      for name, cell in r["metrics"].items()
      if name.endswith("_20w1s") and name.rpartition("_")[0] in shots.BASELINE_NAMES})

  def published(error):
    mean, _, ci = error.partition(" +- ")
    return f"{100 - float(mean):.1f}" + (f" ± {ci}" if ci else "")
  lines = ["| method | MAML's split: characters at random from all 50 alphabets | Lake's "
           "split: 600 tasks within one evaluation alphabet | Lake's split: his 20 runs |",
           "|---|---:|---:|---:|"]
  lines += [f"| {who} | | | {error} |" for who, error in PUBLISHED_LAKE
            if not who.startswith("prototypical")]
  lines.append(f"| ProtoNets, published | {published(PUBLISHED_MAML['protonet', 'conv4', 20, 1])}"
               " (Snell et al. 2017) | | "
               + "".join(e for who, e in PUBLISHED_LAKE if who.startswith("prototypical"))
               + " (per Lake et al. 2019) |")
  lines.append(f"| MAML, published | {published(PUBLISHED_MAML['maml', 'conv4', 20, 1])} "
               "(Finn et al. 2017) | | |")
  for name, key, is_row in _PROTOCOL_ROWS:
    folder = next((f for f, cols in sorted(lake.items())
                   if any(is_row(r["config"]) for r in cols.values())), None)
    cols = lake.get(folder, {})
    get = lambda kind: _error(cols["test", kind, "transductive"]) if (
        "test", kind, "transductive") in cols else ""
    ours = maml_split.get(key)
    split = _error(ours) if ours else ""
    if ours and meta_iterations(ours):  # the meta-iterations trained, for a fair reading
      done = meta_iterations(ours)
      total = ours["metrics"].get("num_steps")
      split += f" ({done:,} of {total:,} it.)" if total else f" ({done:,} it.)"
    within = get("alphabet")
    trained = max((meta_iterations(r) for r in cols.values()), default=0)
    if within and trained:
      within += f" ({trained:,} it.)"
    if split or cols:
      lines.append(f"| {name} | {split} | {within} | {get('lake_runs')} |")
  return "\n".join(lines)
