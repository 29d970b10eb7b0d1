"""Runs at a glance: every `results.json` under a folder found, classified and plotted.

`find_runs(root)` lists the runs an experiment wrote (meta-training, `meta_eval`,
fine-tuning, sweeps, studies) with their parsed results, `kind_of` says which trainer
wrote each; `learning_curves` reads each run's `metrics.jsonl`, and the plots draw them,
or test accuracy (or MSE) against the number of test-time inner steps. The report that
puts the studies' tables together (`experiments.report`) is `jaxtl.studies.documents`.
"""
import json
import os
import re

from jaxtl import workdir as run_dir
from jaxtl.metrics import pyplot


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


def pct(x) -> str:
  return f"{100 * x:.2f}"


def load(root: str, path: str) -> dict:
  with open(os.path.join(root, path)) as f:
    return json.load(f)


def surgical_table(name: str, result: dict) -> str:
  metrics = result["metrics"]
  strategies = list(dict.fromkeys(s for v in metrics.values() for s in v["strategies"]))
  lines = [f"**{name}** (target test accuracy, %)\n", "| shift | " + " | ".join(strategies)
           + " |", "|---|" + "---:|" * len(strategies)]
  for shift, v in metrics.items():
    cells = [pct(v["strategies"][s]["test_accuracy"]) if s in v["strategies"] else ""
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
