"""Results at a glance: every `results.json` under a folder as Markdown tables and plots.

`write_report(root, out)` reads the runs the experiments wrote (meta-training,
`meta_eval`, fine-tuning, the surgical sweep, the sinusoid lecture) and writes
`out/report.md` with one table per kind of run, and PNG plots (matplotlib, optional):
learning curves from each run's `metrics.jsonl`, test accuracy (or MSE) against the
number of test-time inner steps, and the surgical fine-tuning bars per shift.
"""
import json
import os
import re

from jaxtl.metrics import pyplot

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
PEERS = {  # peers' own reported Omniglot numbers, a row each below jaxtl's
    ("maml", "conv4"): {"learn2learn (reported)": {(5, 1): "99.1"}},
}
OMNIGLOT_SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))
ALGORITHM_ORDER = ("maml", "fomaml", "anil", "metasgd", "reptile", "protonet", "pretrain")


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
    paper = PUBLISHED_MAML.get((c["algorithm"], c["model"], c["way"], c["shot"]), "")
    iterations = _iterations(r) or ""
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


def omniglot_grid(runs) -> str:
  """MAML Table 1's layout: per (algorithm, model), the published row above jaxtl's. A
  jaxtl cell is the `meta_eval` re-evaluation of a committed checkpoint where there is one
  (what a user can reproduce), else the training run's own test; between brackets the
  meta-iterations, and the machines and wall time where the run recorded them."""
  best = {}
  for _, r in runs:
    c = r["config"]
    if (kind_of(r) != "meta" or c.get("dataset") != "omniglot"
        or "test_accuracy" not in r["metrics"]):
      continue
    key = (c["algorithm"], c["model"], c["way"], c["shot"])
    rank = (r.get("evaluated_by") == "experiments.meta_eval", _iterations(r))
    if key not in best or rank > best[key][0]:
      best[key] = (rank, r)
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
    cells = [_grid_cell(best[(algorithm, model, w, k)][1])
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


def plot_learning_curves(root: str, path: str) -> bool:
  """One panel per logged scalar; one line per metrics.jsonl under root (runs in progress
  included)."""
  curves = {}
  for folder, _, files in sorted(os.walk(root)):
    if "metrics.jsonl" in files:
      with open(os.path.join(folder, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
      if rows:
        curves[os.path.relpath(folder, root)] = rows
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


def write_report(root: str, out: str = "") -> str:
  """Writes `out/report.md` (default out = root) and its plots; returns the report's path."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f"No folder {root!r} to report on.")
  runs = find_runs(root)
  if not runs:
    raise FileNotFoundError(f"No results.json under {root!r}: run an experiment first.")
  out = out or root
  os.makedirs(out, exist_ok=True)
  by_kind = {}
  for name, r in runs:
    by_kind.setdefault(kind_of(r), []).append((name, r))
  sections = [f"# Results under `{root}`\n"]
  meta = [(n, r) for n, r in by_kind.get("meta", []) if "test_accuracy_by_steps" in r["metrics"]
          or "test_mse_by_steps" in r["metrics"]]
  if meta:
    grid = omniglot_grid(meta)
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
  for kind, title in [("lecture", "Sinusoid lecture"), ("compare", "Fine-tuning strategies")]:
    for name, _ in by_kind.get(kind, []):  # these runs write their own table
      table = os.path.join(root, name, "results.md")
      if os.path.exists(table):
        with open(table) as f:
          sections.append(f"## {title}: {name}\n\n" + f.read().strip())
  for name, r in by_kind.get("surgical", []):
    from jaxtl.finetune import surgical  # pylint: disable=import-outside-toplevel
    png = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") + "_surgical.png"
    sections.append(f"## Surgical fine-tuning: {name}\n\n" + surgical_table(name, r))
    if surgical.plot(r["metrics"], os.path.join(out, png)):
      sections.append(f"![surgical fine-tuning]({png})")
  other = [run for kind in ("finetune", "other") for run in by_kind.get(kind, [])]
  if other:
    sections.append("## Other runs\n\n" + other_table(other))
  if plot_learning_curves(root, os.path.join(out, "learning_curves.png")):
    sections.append("## Learning curves\n\n![learning curves](learning_curves.png)")
  path = os.path.join(out, "report.md")
  with open(path, "w") as f:
    f.write("\n\n".join(sections) + "\n")
  return path
