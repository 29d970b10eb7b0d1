"""Results at a glance: every `results.json` under a folder as Markdown tables and plots.

`write_report(root, out)` reads the runs the experiments wrote (meta-training,
`meta_eval`, fine-tuning, the surgical sweep, the sinusoid lecture) and writes
`out/report.md` with one table per kind of run, and PNG plots (matplotlib, optional):
learning curves from each run's `metrics.jsonl`, test accuracy (or MSE) against the
number of test-time inner steps, and the surgical fine-tuning bars per shift.

`TABLES` names every results table of README.md and BUILD_NOTES.md: each is a function of
the results folder that reads one committed JSON file, so no number there is typed by
hand. The documents hold them between `<!-- NAME -->` and `<!-- /NAME -->`, the report
prints those blocks ready to paste, and `tests/test_results.py` checks they still match.
"""
import json
import os
import re

import numpy as np

from jaxtl import workdir as run_dir
from jaxtl.metrics import pyplot

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PUBLISHED_MAML = {  # Finn et al. 2017, Table 1 (conv) and the MLP row; ProtoNets (Snell 2017)
    ("maml", "conv4", 5, 1): "98.7 +- 0.4", ("maml", "conv4", 5, 5): "99.9 +- 0.1",
    ("maml", "conv4", 20, 1): "95.8 +- 0.3", ("maml", "conv4", 20, 5): "98.9 +- 0.2",
    ("maml", "mlp", 5, 1): "89.7 +- 1.1", ("maml", "mlp", 5, 5): "97.5 +- 0.6",
    ("protonet", "conv4", 5, 1): "98.8", ("protonet", "conv4", 5, 5): "99.7",
    ("protonet", "conv4", 20, 1): "96.0", ("protonet", "conv4", 20, 5): "98.9",
    ("anil", "conv4", 20, 1): "96.2", ("anil", "conv4", 20, 5): "98.0",
    # First-order MAML (Finn 2017 Table 1; with transduction, per the Reptile paper).
    ("fomaml", "conv4", 5, 1): "98.3 +- 0.5", ("fomaml", "conv4", 5, 5): "99.2 +- 0.2",
    ("fomaml", "conv4", 20, 1): "89.4 +- 0.5", ("fomaml", "conv4", 20, 5): "97.9 +- 0.1",
    ("reptile", "conv4", 5, 1): "97.68", ("reptile", "conv4", 5, 5): "99.48",
    ("reptile", "conv4", 20, 1): "89.43", ("reptile", "conv4", 20, 5): "97.12",
}
PAPERS = {"maml": "Finn et al. 2017", "fomaml": "Finn et al. 2017", "anil": "Raghu et al. 2020",
          "protonet": "Snell et al. 2017", "reptile": "Nichol et al. 2018"}
PEERS = {  # peers' own reported Omniglot numbers, a row each below jaxtl's
    ("maml", "conv4"): {"learn2learn (reported)": {(5, 1): "99.1"}},
    # The black-box family's published results (other architectures than jaxtl's).
    ("blackbox", "conv4"): {
        "SNAIL, published (Mishra et al. 2018)": {(5, 1): "99.07", (5, 5): "99.78",
                                                  (20, 1): "97.64", (20, 5): "99.36"},
        "MANN, published (per Finn et al. 2017)": {(5, 1): "82.8", (5, 5): "94.9"}},
}
OMNIGLOT_SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))
ALGORITHM_ORDER = ("maml", "fomaml", "anil", "metasgd", "reptile", "protonet", "blackbox",
                   "pretrain")


def find_runs(root: str) -> list[tuple[str, dict]]:
  """(folder relative to root, parsed results.json) for every run under root, sorted."""
  runs = []
  for folder, _, files in sorted(os.walk(root)):
    if "results.json" in files:
      with open(os.path.join(folder, "results.json")) as f:
        runs.append((os.path.relpath(folder, root), json.load(f)))
  return runs


def kind_of(result: dict) -> str:
  """The `kind` each trainer writes (`jaxtl.metrics.write_results`); results.json files
  written before that field existed are recognised by their shape."""
  if "kind" in result:
    return result["kind"]
  config, metrics = result.get("config", {}), result.get("metrics", {})
  if "maml" in config and "multitask" in metrics:
    return "lecture"
  if "algorithm" in config:
    return "meta"
  if metrics and all(isinstance(v, dict) and "strategies" in v for v in metrics.values()):
    return "surgical"
  return "other"


def _pct(x) -> str:
  return f"{100 * x:.2f}"


def _iterations(r) -> int:
  """Meta-iterations a run trained for (0 if it did not say)."""
  return int(r["metrics"].get("meta_iterations", r.get("meta_iterations", 0)) or 0)


PAPER_ITERATIONS = 60_000  # MAML's Omniglot runs (Finn et al. 2017)


def meta_table(runs) -> str:
  lines = ["| run | algorithm | model | setting | meta-iterations | train time (s) | test steps "
           "| jaxtl | paper |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
  for name, r in runs:
    c, m = r["config"], r["metrics"]
    metric = "mse" if c.get("dataset") == "sinusoid" else "accuracy"
    value, ci = m.get(f"test_{metric}"), m.get(f"test_{metric}_ci95")
    if metric == "accuracy":
      shown = f"{_pct(value)} +- {_pct(ci)}"
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
    steps = "" if c["algorithm"] == "protonet" else m.get("test_inner_steps")  # no inner loop
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
  return f"{_pct(m['test_accuracy'])} +- {_pct(m['test_accuracy_ci95'])} ({', '.join(notes)})"


def _omniglot_cells(runs) -> dict:
  """(algorithm, model, way, shot) -> (folder, result) of the run that fills that cell of
  the Omniglot grid: a `meta_eval` re-evaluation before a training run's own test, then
  the most meta-iterations."""
  best = {}
  for name, r in runs:
    c = r["config"]
    if (kind_of(r) != "meta" or c.get("dataset") != "omniglot"
        or "test_accuracy" not in r["metrics"]):
      continue
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


def surgical_table(name: str, result: dict) -> str:
  metrics = result["metrics"]
  strategies = list(dict.fromkeys(s for v in metrics.values() for s in v["strategies"]))
  lines = [f"**{name}** (target test accuracy, %)\n", "| shift | " + " | ".join(strategies)
           + " |", "|---|" + "---:|" * len(strategies)]
  for shift, v in metrics.items():
    cells = [_pct(v["strategies"][s]["test_accuracy"]) if s in v["strategies"] else ""
             for s in strategies]
    lines.append(f"| {shift} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def other_table(runs) -> str:
  lines = ["| run | metric | value |", "|---|---|---:|"]
  for name, r in runs:
    for key, value in sorted(r.get("metrics", {}).items()):
      if isinstance(value, (int, float)) and re.match(r"(test|val)_", key):
        lines.append(f"| {name} | {key} | {value:.4f} |")
  return "\n".join(lines)


def learning_curves(root: str) -> dict:
  """{kind of run: {run folder: rows of its metrics.jsonl}} under root (runs in progress
  included); the kind from the run's config (`kind_of`)."""
  out = {}
  for folder, _, files in sorted(os.walk(root)):
    if "metrics.jsonl" in files:
      with open(os.path.join(folder, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
      config = run_dir.saved_config(folder) or {}
      if rows:
        kind = "meta" if "algorithm" in config else "finetune"
        out.setdefault(kind, {})[os.path.relpath(folder, root)] = rows
  return out


def plot_learning_curves(curves: dict, path: str) -> bool:
  """One panel per scalar that these runs log (runs of one kind); a line per run."""
  keys = sorted({k for rows in curves.values() for row in rows for k in row} - {"step"})
  plt = pyplot()
  if not curves or not keys or plt is None:
    return False
  fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
  for ax, key in zip(axes[0], keys):
    for name, rows in curves.items():
      points = [(row["step"], row[key]) for row in rows if key in row]
      if points:
        ax.plot(*zip(*points), label=name)
    ax.set_xlabel("step")
    ax.set_title(key)
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return True


def plot_by_steps(runs, metric: str, path: str) -> bool:
  """Test `metric` (95% CI bars) against the number of test-time inner steps."""
  plt = pyplot()
  if not runs or plt is None:
    return False
  fig, ax = plt.subplots(figsize=(5.5, 3.5))
  for name, r in runs:
    m = r["metrics"]
    by_steps, ci = m[f"test_{metric}_by_steps"], m.get(f"test_{metric}_ci95_by_steps", {})
    steps = sorted(by_steps, key=int)
    ax.errorbar([int(s) for s in steps], [by_steps[s] for s in steps],
                yerr=[ci.get(s, 0.0) for s in steps], marker="o", capsize=3, label=name)
  ax.set_xlabel("inner steps at test time")
  ax.set_ylabel(f"test {metric}")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return True


def _load(root: str, path: str) -> dict:
  with open(os.path.join(root, path)) as f:
    return json.load(f)


def lecture_table(root: str) -> str:
  """The sinusoid lecture's table, as `experiments.lecture` prints it."""
  from jaxtl.meta import lecture  # pylint: disable=import-outside-toplevel
  r = _load(root, "lecture/results.json")
  steps = [str(s) for s in r["config"]["maml"]["eval_steps"] if s > 0]
  return lecture.format_table(r["metrics"], steps)


def compare_table(path: str):
  """The fine-tuning comparison's table (`experiments.compare_finetune`) in `path`."""
  def table(root: str) -> str:
    from jaxtl.finetune import compare  # pylint: disable=import-outside-toplevel
    return compare.format_table(_load(root, path)["metrics"])
  return table


def surgical_sweep_table(path: str):
  """The surgical sweep's table (`experiments.surgical` / `experiments.multitask`)."""
  def table(root: str) -> str:
    from jaxtl.finetune import sweep as surgical  # pylint: disable=import-outside-toplevel
    return surgical.format_table(_load(root, path)["metrics"])
  return table


def surgical_sweep_verdict(path: str):
  """The surgical sweep's verdict per shift (`sweep.verdict`)."""
  def table(root: str) -> str:
    from jaxtl.finetune import sweep as surgical  # pylint: disable=import-outside-toplevel
    return surgical.verdict(_load(root, path)["metrics"])
  return table


def surgical_study_tables(variant: str):
  """A surgical study's tables and verdicts (`experiments.surgical`), from
  `surgical/VARIANT/results.json` (the rerun of issue 35), else the earlier study's
  `surgical_VARIANT/results.json`."""
  def table(root: str) -> str:
    from jaxtl.finetune import surgical_report  # pylint: disable=import-outside-toplevel
    path = f"surgical/{variant}/results.json"
    if not os.path.exists(os.path.join(root, path)):
      path = f"surgical_{variant}/results.json"
    return surgical_report.format_tables(_load(root, path)["metrics"])
  return table


def surgical_curve_table(root: str) -> str:
  """Validation and test accuracy against fine-tuning steps (`benchmarks.surgical_curve`)."""
  r = _load(root, "surgical/natural/curve.json")
  lines = [f"`{r['row']}` on `{r['shift']}` at each pre-training's pick (most often lr "
           f"{r['learning_rate']:g}); mean ± 95% CI over pre-trainings:", "",
           "| steps | validation (%) | test (%) |", "|---:|---:|---:|"]
  for n, c in sorted(r["steps"].items(), key=lambda kv: int(kv[0])):
    lines.append(f"| {int(n):,} | {100 * c['val_mean']:.2f} ± {100 * c['val_ci95']:.2f} | "
                 f"{100 * c['test_mean']:.2f} ± {100 * c['test_ci95']:.2f} |")
  return "\n".join(lines)


def shots_tables(root: str) -> str:
  """Accuracy against shots, transfer against meta-learning (`experiments.shots`)."""
  from jaxtl.meta import shots  # pylint: disable=import-outside-toplevel
  return shots.format_table(_load(root, "shots/results.json")["metrics"])


def shots_verdict(root: str) -> str:
  """Where transfer catches up with meta-learning, a sentence per way."""
  from jaxtl.meta import shots  # pylint: disable=import-outside-toplevel
  return shots.verdict(_load(root, "shots/results.json")["metrics"])


def pretraining_tables(variant: str):
  """Transfer accuracy per pre-training objective and diversity (`experiments.pretraining`),
  then the question it answers, in a sentence with its numbers."""
  def table(root: str) -> str:
    from jaxtl.objectives import answers, study  # pylint: disable=import-outside-toplevel
    results = _load(root, f"pretraining_{variant}/results.json")
    summary, dataset = results["metrics"]["summary"], results["config"].get("dataset", "omniglot")
    text = answers.answer(summary, dataset)
    return study.format_table(summary, dataset) + (f"\n\n{text}" if text else "")
  return table


def finetune_grid_table(root: str) -> str:
  """The grid against one run per configuration (`benchmarks.finetune_grid`)."""
  b = _load(root, "benchmarks/finetune_grid_cpu.json")
  arms = [a for a in ("process_per_configuration", "one_at_a_time") if a in b["total"]]
  names = {"process_per_configuration": "a process per configuration",
           "one_at_a_time": "one at a time, in one process"}
  lines = [_benchmark_caption(b) + f"{b['configurations_per_strategy']} configurations "
           f"(lr x wd) per strategy, {b['steps']} steps of {b['batch_size']} each; seconds, "
           "and the grid's speed-up over each:\n",
           "| strategy | " + " | ".join(names[a] + " (s)" for a in arms) + " | grid (s) | "
           + " | ".join(f"speed-up vs {names[a]}" for a in arms) + " |",
           "|---|" + "---:|" * (2 * len(arms) + 1)]
  rows = list(b["strategies"].items()) + [("**total**", b["total"])]
  for label, r in rows:
    lines.append(f"| {label} | " + " | ".join(f"{r[a]:.1f}" for a in arms)
                 + f" | {r['grid']:.1f} | " + " | ".join(f"{r[a] / r['grid']:.2f}x" for a in arms)
                 + " |")
  return "\n".join(lines)


def _benchmark_caption(b: dict) -> str:
  """Where and with what a benchmark ran, as its JSON recorded it."""
  parts = [b.get("machine") or b.get("device", "")]
  parts += [f"{k} {v}" for k, v in b.get("versions", {}).items()]
  line = "; ".join(p for p in parts if p)
  if b.get("command"):
    line += f"; `{b['command']}`"
  return f"Measured on: {line}.\n\n" if line else ""


def _throughput(root: str):
  """Settings in order, jaxtl's fastest row and each peer's row per setting."""
  b = _load(root, "benchmarks/maml_throughput_cpu.json")
  settings = list(dict.fromkeys(r["setting"] for r in b["results"]))
  peers = list(dict.fromkeys(r["method"] for r in b["results"]
                             if not r["method"].startswith("jaxtl")))
  ours, theirs = {}, {}
  for r in b["results"]:
    if r["method"].startswith("jaxtl"):
      best = ours.get(r["setting"])
      if best is None or r["meta_iterations_per_second"] > best["meta_iterations_per_second"]:
        ours[r["setting"]] = r
    else:
      theirs[r["setting"], r["method"]] = r["meta_iterations_per_second"]
  return b, settings, peers, ours, theirs


def _setting_name(r: dict) -> str:
  steps = r["inner_steps"]
  return (f"{r['way']}-way {r['shot']}-shot, {r['meta_batch']} tasks, "
          f"{steps} step{'s' if steps != 1 else ''}")


def throughput_table(root: str) -> str:
  """Meta-iterations per second, jaxtl against each PyTorch peer; the fastest in bold."""
  b, settings, peers, ours, theirs = _throughput(root)
  lines = ["| setting | jaxtl | " + " | ".join(peers) + " |", "|---|" + "---:|" * (1 + len(peers))]
  for s in settings:
    rates = [ours[s]["meta_iterations_per_second"]] + [theirs.get((s, p)) for p in peers]
    top = max(x for x in rates if x is not None)
    cells = ["" if x is None else (f"**{x:.2f}**" if x == top else f"{x:.2f}") for x in rates]
    lines.append(f"| {_setting_name(ours[s])} | " + " | ".join(cells) + " |")
  return _benchmark_caption(b) + "\n".join(lines)


def _with_range(b: dict, setting: str, method: str) -> str:
  """A method's median rate, with its range over the interleaved rounds where recorded."""
  (r,) = [r for r in b["results"] if (r["setting"], r["method"]) == (setting, method)]
  text = f"{r['meta_iterations_per_second']:.2f}"
  if "meta_iterations_per_second_range" in r:
    low, high = r["meta_iterations_per_second_range"]
    text += f" ({low:.2f}-{high:.2f})"
  return text


def throughput_ratio_table(root: str) -> str:
  """The same numbers with jaxtl's method named, each with its range over the rounds
  where recorded, and jaxtl's speed-up over each peer (medians)."""
  b, settings, peers, ours, theirs = _throughput(root)
  methods = list(dict.fromkeys(ours[s]["method"] for s in settings))
  lines = ["| setting | " + " | ".join(methods + peers)
           + " | " + " | ".join(f"jaxtl / {p}" for p in peers) + " |",
           "|---|" + "---:|" * (len(methods) + 2 * len(peers))]
  for s in settings:
    mine = ours[s]["meta_iterations_per_second"]
    cells = [_with_range(b, s, m) if ours[s]["method"] == m else "" for m in methods]
    cells += ["" if theirs.get((s, p)) is None else _with_range(b, s, p) for p in peers]
    cells += ["" if theirs.get((s, p)) is None else f"{mine / theirs[s, p]:.2f}x" for p in peers]
    lines.append(f"| {_setting_name(ours[s])} | " + " | ".join(cells) + " |")
  not_run = "".join(f"\n\nNot run: {reason}." for reason in b.get("not_run", []))
  return _benchmark_caption(b) + "\n".join(lines) + not_run


STEP_CASES = {"finetune_full": "fine-tuning step, full (ResNet, batch {batch})",
              "finetune_linear_probe": "fine-tuning step, linear probe (ResNet, batch {batch})",
              "sinusoid": "sinusoid MAML meta-iteration (25 tasks, 1 inner step)"}


def step_table(path: str):
  """table(root): steps per second of each case in the benchmark JSON at root/path,
  jaxtl against PyTorch (median and range over the interleaved rounds), and jaxtl's
  fastest over each PyTorch method."""
  return lambda root: _step_table(_load(root, path))


def _step_table(b: dict) -> str:
  lines = ["| case | method | per second (range) | jaxtl / this |", "|---|---|---:|---:|"]
  for case in dict.fromkeys(r["case"] for r in b["results"]):
    rows = [r for r in b["results"] if r["case"] == case]
    ours = max((r["per_second"] for r in rows if r["method"].startswith("jaxtl")),
               default=None)
    name = STEP_CASES.get(case, case).format(batch=b.get("batch_size"))
    for r in rows:
      low, high = r["per_second_range"]
      ratio = ("" if ours is None or r["method"].startswith("jaxtl") else
               f"{ours / r['per_second']:.2f}x")
      digits = 1 if low >= 1 else 2  # two decimals for the slow steps
      lines.append(f"| {name} | {r['method']} | {r['per_second']:.{digits}f} "
                   f"({low:.{digits}f}-{high:.{digits}f}) | {ratio} |")
  checks = "".join(f"\n\nCheck: {k.replace('_', ' ')} {v:.1e}."
                   for k, v in b.get("checks", {}).items())
  return _benchmark_caption(b) + "\n".join(lines) + checks


step_throughput_table = step_table("benchmarks/step_throughput_cpu.json")


def conv_cost_table(root: str) -> str:
  """Milliseconds per convolution of the ResNet, forward and forward + backward, per
  method; the last row sums one forward pass's convolutions (`count` each)."""
  b = _load(root, "benchmarks/conv_cost_cpu.json")
  columns = list(dict.fromkeys((r["method"], r["pass"]) for r in b["results"]))
  shape_of = lambda r: (r["input"], r["in"], r["out"], r["kernel"], r["stride"], r["count"])
  shapes = list(dict.fromkeys(shape_of(r) for r in b["results"]))
  ms = {(shape_of(r), r["method"], r["pass"]): r["ms"] for r in b["results"]}
  lines = ["| convolution (batch %d) | x | " % b["batch_size"]
           + " | ".join(f"{m}, {p}" for m, p in columns) + " |",
           "|---|---:|" + "---:|" * len(columns)]
  for shape in shapes:
    size, cin, cout, k, stride, count = shape
    lines.append(f"| {size}x{size}x{cin} -> {cout}, {k}x{k} stride {stride} | {count} | "
                 + " | ".join(f"{ms[(shape, *c)]:.2f}" for c in columns) + " |")
  totals = [sum(ms[(shape, *c)] * shape[-1] for shape in shapes) for c in columns]
  lines.append("| all, one step's worth | | " + " | ".join(f"**{t:.1f}**" for t in totals)
               + " |")
  return _benchmark_caption(b) + "\n".join(lines)


def roofline_table(root: str) -> str:
  """Each step's time against the time its work would take at the rates of the machine's
  probes (a matrix product's GFLOP/s, a copy's GB/s), measured in the same run
  (`benchmarks.roofline`)."""
  b = _load(root, "benchmarks/roofline_cpu.json")
  probes = [r for r in b["results"] if r["kind"].endswith("probe")]
  steps = [r for r in b["results"] if not r["kind"].endswith("probe")]
  rate = lambda p: (f"{p['gflop_per_s']:.1f} GFLOP/s" if p["kind"] == "arithmetic probe"
                    else f"{p['gbytes_per_s']:.1f} GB/s")
  lines = ["| step | ms | GFLOP | GB moved | GFLOP/s | "
           + " | ".join(f"ms at {p['case']}'s {rate(p)}" for p in probes) + " |",
           "|---|---:|---:|---:|---:|" + "---:|" * len(probes)]
  for r in steps:
    lines.append(f"| {r['case']} | {r['ms']:.1f} | {r['gflop']:.2f} | {r['gbytes']:.2f} | "
                 f"{r['gflop_per_s']:.1f} | " + " | ".join(
                     f"{r['ms_at_probe_rate'][p['case']]:.1f}" for p in probes) + " |")
  return _benchmark_caption(b) + "\n".join(lines)


def finetune_cost_table(root: str) -> str:
  """Milliseconds per fine-tuning step for each strategy, and relative to full."""
  b = _load(root, "benchmarks/finetune_cost_cpu.json")
  lines = ["| strategy | trainable params | step (ms) | relative to full |",
           "|---|---:|---:|---:|"]
  for name, r in b["results"].items():
    lines.append(f"| {name} | {r['trainable_params']:,} | {r['step_ms']:.2f} | "
                 f"{r['relative_to_full']:.2f} |")
  return "\n".join(lines)


def meta_step_cost_table(root: str) -> str:
  """Milliseconds per meta-step for each algorithm, and relative to MAML."""
  b = _load(root, "benchmarks/finetune_cost_cpu.json")
  lines = ["| meta-step | step (ms) | relative to MAML |", "|---|---:|---:|"]
  for name, r in b["meta_step"].items():
    lines.append(f"| {name} | {r['step_ms']:.1f} | {r['relative_to_maml']:.2f} |")
  return "\n".join(lines)


def objectives_throughput_table(root: str) -> str:
  """Pre-training images per second for each objective, and the share of a step spent
  making its inputs (`benchmarks.objectives_throughput`)."""
  b = _load(root, "benchmarks/objectives_throughput_cpu.json")
  lines = [f"{b['machine']}, Conv4 ({b['features']} features) on {b['batch_size']} source images "
           f"of {'x'.join(map(str, b['image_shape']))} per step; median (range) over "
           f"{b['repeats']} interleaved blocks of {b['steps']} steps\n",
           "| objective | images/s | step (ms) | inputs (ms) | inputs / step |",
           "|---|---:|---:|---:|---:|"]
  for name, r in b["objectives"].items():
    low, high = r["images_per_second_range"]
    lines.append(f"| {name} | {r['images_per_second']:.0f} ({low:.0f}-{high:.0f}) | "
                 f"{r['step_ms']:.1f} | {r['prepare_ms']:.1f} | {100 * r['input_share']:.0f}% |")
  return "\n".join(lines)


def memory_table(root: str) -> str:
  """Peak memory, compile time and step time of second-order MAML per inner-step count,
  plain and rematerialised."""
  b = _load(root, "benchmarks/maml_memory_cpu.json")
  rows = {(r["inner_steps"], r["remat"]): r for r in b["results"]}
  steps = sorted({k for k, _ in rows})
  lines = ["| inner steps | " + " | ".join(str(k) for k in steps) + " |",
           "|---|" + "---:|" * len(steps)]
  for label, remat in (("peak GiB, plain", False), ("peak GiB, `remat=True`", True)):
    lines.append(f"| {label} | " + " | ".join(
        f"{rows[k, remat]['peak_gib']:.2f}" if (k, remat) in rows else "" for k in steps) + " |")
  for label, key, digits in (("compile s", "compile_seconds", 1),
                             ("s per meta-iteration", "seconds_per_meta_iteration", 2)):
    cells = [" / ".join(f"{rows[k, m][key]:.{digits}f}" if (k, m) in rows else "-"
                        for m in (False, True)) for k in steps]
    lines.append(f"| {label}, plain / remat | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def memory_growth(results: list) -> dict:
  """{remat: MiB of peak memory per inner step}, the least-squares slope over the
  inner-step counts measured (`benchmarks.maml_memory`'s rows)."""
  growth = {}
  for remat in (False, True):
    rows = [r for r in results if r["remat"] == remat]
    if len(rows) > 1:
      steps, peak = [r["inner_steps"] for r in rows], [r["peak_gib"] for r in rows]
      growth[remat] = 1024 * float(np.polyfit(steps, peak, 1)[0])
  return growth


def memory_summary(root: str) -> str:
  """What rematerialising each inner step saves, in a sentence from the memory table's
  JSON."""
  b = _load(root, "benchmarks/maml_memory_cpu.json")
  growth = memory_growth(b["results"])
  most = max(r["inner_steps"] for r in b["results"])
  peak = {r["remat"]: r["peak_gib"] for r in b["results"] if r["inner_steps"] == most}
  r = b["results"][0]
  return (f"Second-order MAML, {r['setting']} with {r['meta_batch']} tasks: without remat, "
          f"peak memory grows by {growth[False]:.0f} MiB per inner step (every step's "
          f"activations are kept for the outer gradient); with `jax.checkpoint` around each "
          f"inner step (`--config.remat=True`), by {growth[True]:.1f} MiB "
          f"({growth[False] / growth[True]:.0f}x less: only each step's fast weights are "
          f"kept), so {most} inner steps need {peak[True]:.1f} GiB instead of "
          f"{peak[False]:.1f}.")


def lecture_seeds_table(root: str) -> str:
  """The lecture's test MSE after 1 / 5 / 10 steps under other seeds
  (`benchmarks.lecture_seeds`), with the fine-tuning step size picked on validation."""
  b = _load(root, "benchmarks/lecture_seeds.json")
  lines = ["| seed | MAML | pre-train, fine-tune (lr) | multi-task, fine-tune (lr) |",
           "|---:|---|---|---|"]
  for seed, r in b["seeds"].items():
    cell = lambda m: " / ".join(f"{r[m]['test_mse_by_steps'][k]:.2f}" for k in ("1", "5", "10"))
    lines.append(f"| {seed} | {cell('maml')} | {cell('pretrain')} ({r['pretrain']['finetune_lr']:g})"
                 f" | {cell('multitask')} ({r['multitask']['finetune_lr']:g}) |")
  return "\n".join(lines)


TABLES = {  # <!-- NAME --> block of README.md / BUILD_NOTES.md -> its table from the results
    "omniglot-table": lambda root: omniglot_grid(find_runs(root)),
    "omniglot-gaps": omniglot_gaps,
    "lecture-table": lecture_table,
    "lecture-seeds-table": lecture_seeds_table,
    "compare-digits-table": compare_table("compare_digits/results.json"),
    "surgical-digits-table": surgical_sweep_table("surgical_digits/multitask.json"),
    "surgical-digits-verdict": surgical_sweep_verdict("surgical_digits/multitask.json"),
    "surgical-natural-table": surgical_study_tables("natural"),
    "surgical-output-table": surgical_study_tables("output"),
    "surgical-feature-table": surgical_study_tables("feature"),
    "surgical-lpft-table": surgical_study_tables("lpft"),
    "surgical-mnist-c-table": surgical_study_tables("mnist_c"),
    "surgical-curve-table": surgical_curve_table,
    "finetune-grid-table": finetune_grid_table,
    "shots-table": shots_tables,
    "shots-verdict": shots_verdict,
    "pretraining-labels-table": pretraining_tables("labels"),
    "pretraining-diversity-table": pretraining_tables("diversity"),
    **{f"pretraining-{d.replace('_', '-')}-{kind}-table": pretraining_tables(f"{d}_{kind}")
       for d in ("mnist", "fashion_mnist") for kind in ("labels", "diversity")},
    "throughput-table": throughput_table,
    "throughput-ratio-table": throughput_ratio_table,
    "step-throughput-table": step_throughput_table,
    "torchvision-step-table": step_table("benchmarks/torchvision_resnet_cpu.json"),
    "conv-cost-table": conv_cost_table,
    "roofline-table": roofline_table,
    "finetune-cost-table": finetune_cost_table,
    "meta-step-cost-table": meta_step_cost_table,
    "memory-table": memory_table,
    "memory-summary": memory_summary,
    "objectives-throughput-table": objectives_throughput_table,
}


def document_tables(root: str) -> dict[str, str]:
  """NAME -> table for each of `TABLES` whose JSON file is under root."""
  tables = {}
  for name, table in TABLES.items():
    try:
      tables[name] = table(root)
    except FileNotFoundError:
      continue
  return tables


def write_report(root: str, out: str = "") -> str:
  """Writes `out/report.md` (default out = root) and its plots; returns the report's path."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f"No folder {root!r} to report on.")
  runs = find_runs(root)
  if not runs:
    raise FileNotFoundError(f"No results.json under {root!r}: run an experiment first.")
  out = out or root
  os.makedirs(out, exist_ok=True)
  maintainers = os.path.realpath(root) == os.path.realpath(os.path.join(REPO, "results"))
  by_kind = {}
  for name, r in runs:
    by_kind.setdefault(kind_of(r), []).append((name, r))
  sections = [f"# Results under `{root}`\n"]
  meta = [(n, r) for n, r in by_kind.get("meta", []) if "test_accuracy_by_steps" in r["metrics"]
          or "test_mse_by_steps" in r["metrics"]]
  if meta:
    grid = omniglot_grid(meta) if maintainers else ""  # the papers' layout, for the repo
    if grid:
      sections.append("## Omniglot, MAML Table 1's layout (test accuracy, %, +- 95% CI)\n\n"
                      + grid)
    sections.append("## Meta-learning runs (mean over test tasks +- 95% CI)\n\n"
                    + meta_table(meta))
    for metric in ("accuracy", "mse"):
      group = [(n, r) for n, r in meta if f"test_{metric}_by_steps" in r["metrics"]]
      png = f"meta_{metric}_by_steps.png"
      if group and plot_by_steps(group, metric, os.path.join(out, png)):
        sections.append(f"![test {metric} against inner steps]({png})")
  for kind, title in [("lecture", "Sinusoid lecture"), ("compare", "Fine-tuning strategies"),
                      ("surgical_study", "Surgical fine-tuning study"),
                      ("shots", "Transfer against meta-learning by shots"),
                      ("pretraining", "Pre-training study")]:
    for name, _ in by_kind.get(kind, []):  # these runs write their own table
      table = os.path.join(root, name, "results.md")
      if os.path.exists(table):
        with open(table) as f:
          sections.append(f"## {title}: {name}\n\n" + f.read().strip())
        if os.path.exists(os.path.join(root, name, "results.png")):
          sections.append(f"![{title}]({os.path.relpath(os.path.join(root, name), out)}/results.png)")
  for name, r in by_kind.get("surgical", []):
    from jaxtl.finetune import sweep as surgical  # pylint: disable=import-outside-toplevel
    png = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") + "_surgical.png"
    sections.append(f"## Surgical fine-tuning: {name}\n\n" + surgical_table(name, r))
    if surgical.plot(r["metrics"], os.path.join(out, png)):
      sections.append(f"![surgical fine-tuning]({png})")
  other = [run for kind in ("finetune", "other") for run in by_kind.get(kind, [])]
  if other:
    sections.append("## Other runs\n\n" + other_table(other))
  for kind, curves in learning_curves(root).items():
    png = "learning_curves.png" if kind == "finetune" else f"learning_curves_{kind}.png"
    if plot_learning_curves(curves, os.path.join(out, png)):
      title = "meta-learning" if kind == "meta" else "training and fine-tuning"
      sections.append(f"## Learning curves, {title}\n\n![learning curves]({png})")
  blocks = [f"<!-- {name} -->\n{table}\n<!-- /{name} -->"
            for name, table in document_tables(root).items() if table] if maintainers else []
  if blocks:  # the repository's own results: the blocks of its documents
    sections.append("## Blocks of README.md and BUILD_NOTES.md\n\nEach block, markers "
                    "included, replaces the block of the same name there "
                    "(`tests/test_results.py` checks that they match).\n\n"
                    + "\n\n".join(blocks))
  path = os.path.join(out, "report.md")
  with open(path, "w") as f:
    f.write("\n\n".join(sections) + "\n")
  return path
