"""Meta-learning tables: every meta-learning run in a table, and the Omniglot grid in
MAML's Table 1 layout with the published rows above jaxtl's (`published`), plus a line
per cell saying how far jaxtl is from the paper."""
import json
import os

import numpy as np

from jaxtl import stats
from jaxtl.data import lake_runs
from jaxtl.meta import tasks
from jaxtl.report import find_runs, kind_of, pct
from jaxtl.studies import shots
from jaxtl.studies.published import (PAPER_ITERATIONS, PAPERS, PEERS, PUBLISHED_LAKE,
                                     PUBLISHED_MAML)


OMNIGLOT_SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))


ALGORITHM_ORDER = ("maml", "fomaml", "anil", "metasgd", "reptile", "protonet", "blackbox",
                   "relation", "pretrain")


def _iterations(r) -> int:
  """Meta-iterations a run trained for (0 if it did not say)."""
  return int(r["metrics"].get("meta_iterations", r.get("meta_iterations", 0)) or 0)


def meta_table(runs) -> str:
  lines = ["| run | algorithm | model | setting | meta-iterations | train time (s) | test steps "
           "| jaxtl | paper |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
  for name, r in runs:
    c, m = r["config"], r["metrics"]
    metric = "mse" if c.get("dataset") == "sinusoid" else "accuracy"
    value, ci = m.get(f"test_{metric}"), m.get(f"test_{metric}_ci95")
    if metric == "accuracy":
      shown = f"{pct(value)} +- {pct(ci)}"
      setting = f"{c['way']}-way {c['shot']}-shot"
    else:
      shown = f"{value:.3f} +- {ci:.3f} MSE"
      setting = f"sinusoid {c['shot']}-shot"
    iterations = _iterations(r) or ""
    published = PUBLISHED_MAML.get((c["algorithm"], c["model"], c["way"], c["shot"]), "")
    full = int(c.get("num_steps") or 0) >= PAPER_ITERATIONS and "num_steps" not in m
    # A paper's number beside a run of its length only: a short run is not comparable.
    paper = published if full else (f"({published} after {PAPER_ITERATIONS:,} it.)"
                                     if published else "")
    if "num_steps" in m:  # meta_eval of a run still in progress
      iterations = f"{iterations} of {m['num_steps']} (in progress)"
    seconds = m.get("train_seconds")
    # no inner loop (ProtoNets), or one per member (an ensemble's dict)
    steps = "" if c["algorithm"] == "protonet" else m.get("test_inner_steps")
    steps = "" if isinstance(steps, dict) else steps
    lines.append(f"| {name} | {c['algorithm']} | {c['model']} | {setting} | {iterations} | "
                 f"{'' if seconds is None else f'{seconds:.0f}'} | {steps} | {shown} | {paper} |")
  return "\n".join(lines)


def _grid_cell(r) -> str:
  m = r["metrics"]
  notes = [f"{_iterations(r):,} it."] if _iterations(r) else []
  if "num_steps" in m:
    notes = [f"{_iterations(r):,} of {m['num_steps']:,} it., in progress"]
  machines = [s["machine"] for s in m.get("train_segments") or [] if s["machine"]]
  notes += list(dict.fromkeys(machines))
  if m.get("train_seconds"):
    notes.append(f"{m['train_seconds'] / 60:.0f} min")
  return f"{pct(m['test_accuracy'])} +- {pct(m['test_accuracy_ci95'])} ({', '.join(notes)})"


def _omniglot_cells(runs) -> dict:
  """(algorithm, model, way, shot) -> (folder, result) of the run that fills that cell of
  the Omniglot grid: a `meta_eval` re-evaluation before a training run's own test, then
  the most meta-iterations."""
  best = {}
  for name, r in runs:
    c = r["config"]
    if (kind_of(r) != "meta" or c.get("dataset") != "omniglot"
        or c.get("class_split", "maml") != "maml" or "test_accuracy" not in r["metrics"]):
      continue  # MAML's protocol only: Lake's has a table of its own
    key = (c["algorithm"], c["model"], c["way"], c["shot"])
    rank = (r.get("evaluated_by") == "experiments.meta_eval", _iterations(r))
    if key not in best or rank > best[key][0]:
      best[key] = (rank, (name, r))
  return {key: cell for key, (_, cell) in best.items()}


def _against(ours: float, who: str, text: str) -> str:
  """ours (%) against a published "mean" or "mean +- ci" (%)."""
  mean, _, ci = text.partition(" +- ")
  if ci and abs(ours - float(mean)) <= float(ci):
    return f"inside {who}'s interval ({text})"
  gap = ours - float(mean)
  return f"{abs(gap):.1f} points {'under' if gap < 0 else 'over'} {who}'s {text}"


def _training_log(root: str, folder: str) -> list:
  """The metrics.jsonl records of the training run in `folder` (or of the run a
  `meta_eval` folder evaluated, one level up)."""
  for path in (os.path.join(root, folder, "metrics.jsonl"),
               os.path.join(root, os.path.dirname(folder), "metrics.jsonl")):
    if os.path.exists(path):
      with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
  return []


def omniglot_gaps(root: str) -> str:
  """A line per jaxtl Omniglot cell with a published number: the gap in points (or inside
  the published interval) and the meta-iterations it trained; for a run in progress, its
  training query accuracy so far and its pace on its machine."""
  cells = _omniglot_cells(find_runs(root))
  lines = []
  for key in sorted(cells, key=lambda k: (ALGORITHM_ORDER.index(k[0]), k[1], k[2], k[3])):
    algorithm, model, way, shot = key
    folder, r = cells[key]
    refs = [(PAPERS[algorithm], PUBLISHED_MAML[key])] if key in PUBLISHED_MAML else []
    refs += [(peer.split(",")[0], numbers[way, shot])
             for peer, numbers in PEERS.get((algorithm, model), {}).items()
             if "published" in peer and (way, shot) in numbers]
    if not refs:
      continue
    m = r["metrics"]
    ours = 100 * m["test_accuracy"]
    name = algorithm if model == "conv4" else f"{algorithm} {model}"
    line = (f"- {name}, {way}-way {shot}-shot: {ours:.2f} after {_iterations(r):,} "
            f"meta-iterations, " + "; ".join(_against(ours, who, text) for who, text in refs))
    log = _training_log(root, folder)
    if "num_steps" in m and log:  # in progress
      rate = log[-1]["meta_iterations_per_second"]
      days = (m["num_steps"] - _iterations(r)) / rate / 86400
      line += (f". In progress: training query accuracy {100 * log[0]['query_accuracy']:.0f}%"
               f" at {log[0]['step']:,} meta-iterations, {100 * log[-1]['query_accuracy']:.0f}%"
               f" at {log[-1]['step']:,}; {rate:.2f} meta-iterations/s, so the remaining "
               f"{m['num_steps'] - _iterations(r):,} would take {days:.1f} days at that pace")
    lines.append(line + ".")
  return "\n".join(lines)


def omniglot_grid(runs) -> str:
  """MAML Table 1's layout: per (algorithm, model), the published row above jaxtl's. A
  jaxtl cell is the `meta_eval` re-evaluation of a committed checkpoint where there is one
  (what a user can reproduce), else the training run's own test; between brackets the
  meta-iterations, and the machines and wall time where the run recorded them."""
  best = {key: r for key, (_, r) in _omniglot_cells(runs).items()}
  if not best:
    return ""
  header = "| method | " + " | ".join(f"{w}-way {k}-shot" for w, k in OMNIGLOT_SETTINGS)
  lines = [header + " |", "|---|" + "---:|" * len(OMNIGLOT_SETTINGS)]
  rows = sorted({key[:2] for key in best},
                key=lambda am: (ALGORITHM_ORDER.index(am[0]), am[1]))
  for algorithm, model in rows:
    name = algorithm if model == "conv4" else f"{algorithm} {model}"
    published = [PUBLISHED_MAML.get((algorithm, model, w, k), "") for w, k in OMNIGLOT_SETTINGS]
    if any(published):
      lines.append(f"| {name}, published | " + " | ".join(published) + " |")
    cells = [_grid_cell(best[(algorithm, model, w, k)])
             if (algorithm, model, w, k) in best else "" for w, k in OMNIGLOT_SETTINGS]
    lines.append(f"| {name}, jaxtl | " + " | ".join(cells) + " |")
    for peer, numbers in PEERS.get((algorithm, model), {}).items():
      lines.append(f"| {name}, {peer} | "
                   + " | ".join(numbers.get(s, "") for s in OMNIGLOT_SETTINGS) + " |")
  return "\n".join(lines)


def _lake_cells(runs) -> dict:
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
    config = dict(c["tasks"], way=20, test_shot=1, test_query=c["query"], eval_split="test",
                  baseline=baseline, batch_norm="running", pretrain_steps=c["pretrain"]["num_steps"],
                  val_tasks=c["val_tasks"])
    metrics = {"test_accuracy": cell["accuracy"], "test_accuracy_ci95": cell["ci95"],
               "test_accuracy_per_task": cell["per_task"]}
    row = os.path.dirname(name) + (f", {baseline}" if len(baselines) > 1 else "")
    found.append((row, ("test", config["test_tasks"], "transductive"),
                  {"config": config, "metrics": metrics}))
  return found


# The fields that choose the test tasks: runs equal in them were scored on the same tasks.
_TASK_FIELDS = ("dataset", "class_split", "split_seed", "eval_seed", "eval_tasks", "way",
                "test_shot", "test_query", "test_tasks", "num_val_alphabets", "eval_split")


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
  cells = _lake_cells(find_runs(root))
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
      training = (f"{_iterations(trained):,} it. x {c['meta_batch']} "
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
