"""Transfer against multi-task learning and the target alone, with equal budgets, on the
shift benchmarks: `sweep(config, workdir, multitask=True)` (`experiments.multitask`).
One training run per configuration (`jaxtl.finetune.trainer`); the surgical fine-tuning
study itself runs its grids as one compiled program (`jaxtl.studies.surgical`).

For every shift in `config.shifts` (jaxtl.data.shifts): pre-train on its source task
once per `config.pretrain_seeds` (and per distinct source), then fine-tune each on
`num_train` labelled target examples with every strategy in `config.strategies`; each
row's learning rate is tuned per pre-training on a validation split held out from the
target's training examples (`jaxtl.finetune.compare.tuned_row`), and the test accuracy
reported with its 95% interval over pre-trainings (`jaxtl.stats`). The baselines trained
from scratch draw one replicate per pre-training seed, so every row is paired. Writes
`results.json`, `results.md` and `results_accuracy.png` (`multitask.*` for the multi-task
comparison).
"""
import os
import re

import numpy as np
from absl import logging

from jaxtl import runtime, stats
from jaxtl.data.shifts import SHIFTS, make_shift
from jaxtl.errors import ConfigError
from jaxtl.finetune.compare import by_pretraining, check_strategies, pretrained_runs, tuned_row
from jaxtl.finetune.data import split_train_val
from jaxtl.finetune.multitask import train_and_evaluate_multitask
from jaxtl.studies.surgical.report import EXPECTED, expected_blocks, on_edge
from jaxtl.metrics import pyplot, write_results, write_text


def _shift_data(config, shift):
  """(task, source (train, val, test), target (train, val, test)) for one shift."""
  task = make_shift(shift, config.dataset, data_dir=config.data_dir, source=config.source,
                    corruption=config.corruption, seed=config.shift_seed)
  s_train, s_val = split_train_val(task.source_train, 0, config.pretrain.num_val,
                                   config.pretrain.data_seed)
  t_train, t_val = split_train_val(task.target_train, config.num_train, config.num_val,
                                   config.finetune.data_seed)
  return task, (s_train, s_val, task.source_test), (t_train, t_val, task.target_test)


def _pretrained(config, workdir, task, source_data):
  """Pre-trains on the task's source once per pre-training seed (runs are cached by
  folder); returns {seed: folder} and the mean source test accuracy."""
  root = os.path.join(workdir, "pretrain", re.sub(r"\W", "_", task.source_key))
  inits, accuracies = pretrained_runs(config, root, source_data)
  return inits, float(np.mean(list(accuracies.values())))


def _transfer_rows(config, workdir, shift, inits, target_data):
  rows = {}
  for label, overrides in config.strategies:
    rows[label] = tuned_row(config, overrides, inits,
                            os.path.join(workdir, "runs", shift, label), target_data)
    logging.info("%s / %s: lr %g, test accuracy %.4f +- %.4f", shift, label,
                 rows[label]["learning_rate"], rows[label]["test_accuracy"],
                 rows[label]["test_accuracy_ci95"])
  return rows


def sweep(config, workdir: str, multitask: bool = False) -> dict:
  """The sweep of the module docstring; with `multitask=True` also the baselines with the
  same budget (pre-training + fine-tuning steps): training on the target alone, and
  multi-task learning on source + target (`experiments.multitask`)."""
  unknown = [s for s in config.shifts if s not in SHIFTS]
  if unknown:
    raise ConfigError(f"Unknown shifts {unknown}; valid shifts: {SHIFTS}.")
  check_strategies(config.finetune, config.strategies)
  os.makedirs(workdir, exist_ok=True)
  results = {}
  for shift in config.shifts:
    task, source_data, target_data = _shift_data(config, shift)
    inits, source_acc = _pretrained(config, workdir, task, source_data)
    rows = _transfer_rows(config, workdir, shift, inits, target_data)
    if multitask:
      budget = {"num_steps": config.pretrain.num_steps + config.finetune.num_steps}
      root = os.path.join(workdir, "runs", shift)
      scratch = {p: "" for p in inits}  # from scratch, one replicate per pre-training seed
      rows["target_only"] = tuned_row(
          config, dict(budget, strategy="full", batch_norm="train"), scratch,
          os.path.join(root, "target_only"), target_data)
      rows["multitask"] = tuned_row(
          config, dict(budget, task_weights=tuple(config.task_weights),
                       batch_norm="train"),  # from scratch: batch statistics
          scratch, os.path.join(root, "multitask"), [target_data, source_data],
          train_fn=train_and_evaluate_multitask)
    results[shift] = {"source_test_accuracy": source_acc, "num_classes": task.num_classes,
                      "strategies": rows}
  name = "multitask" if multitask else "results"
  table = format_table(results)
  write_text(os.path.join(workdir, f"{name}.md"), table + "\n")
  write_results(workdir, config, results, "surgical", name=name)
  if runtime.is_writer():
    plot(results, os.path.join(workdir, f"{name}_accuracy.png"))
  print(table)
  return results


def format_table(results) -> str:
  shifts = list(results)
  labels = list(results[shifts[0]]["strategies"])
  rows = ["| strategy | " + " | ".join(f"{s} shift" for s in shifts) + " |",
          "|---|" + "---:|" * len(shifts)]
  for label in labels:
    cells = []
    for s in shifts:
      r = results[s]["strategies"][label]
      best = max(results[s]["strategies"].values(), key=lambda x: x["test_accuracy"])
      text = f"{100 * r['test_accuracy']:.1f} +- {100 * r['test_accuracy_ci95']:.1f}"
      cells.append(f"**{text}**" if r is best else text)
    rows.append(f"| {label} | " + " | ".join(cells) + " |")
  rows.append("| (source task, test) | " + " | ".join(
      f"{100 * results[s]['source_test_accuracy']:.1f}" for s in shifts) + " |")
  return "\n".join(rows)


def verdict(results) -> str:
  """A line per shift: Lee et al. 2023's block for it under `jaxtl.stats.verdict`, the one
  rule of every study, over pre-trainings and their fine-tuning seeds."""
  lines = []
  for shift, r in results.items():
    rows = r["strategies"]
    blocks = [n for n in rows if re.fullmatch(r"block\d+|head", n)]
    if shift not in EXPECTED or len(blocks) < 2:
      continue
    expected = expected_blocks(shift, blocks)
    runs = {n: by_pretraining(rows[n]["per_seed"], "test_accuracy") for n in blocks}
    v = stats.verdict(runs, expected, blocks, 1.0 / r.get("num_classes", 10),
                      floor=r.get("source_test_accuracy"),
                      on_edge=[n for n in blocks if on_edge(rows[n])])
    lines.append(f"- {shift} shift: {v.markdown()}")
  return "\n".join(lines)


def plot(results, path: str):
  """Bars of target test accuracy per strategy, one panel per shift (needs matplotlib)."""
  plt = pyplot()
  if plt is None:
    return None
  shifts = list(results)
  fig, axes = plt.subplots(1, len(shifts), figsize=(4.2 * len(shifts), 3.6), squeeze=False)
  for ax, shift in zip(axes[0], shifts):
    strategies = results[shift]["strategies"]
    names = list(strategies)
    means = [100 * strategies[n]["test_accuracy"] for n in names]
    stds = [100 * strategies[n]["test_accuracy_ci95"] for n in names]
    colors = ["tab:blue" if n.startswith(("block", "head")) else "tab:gray" for n in names]
    ax.bar(range(len(names)), means, yerr=stds, color=colors, capsize=3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_title(f"{shift}-level shift")
    ax.set_ylim(max(0, min(means) - 10), 100)
    ax.set_ylabel("target test accuracy (%)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
