"""Compare fine-tuning strategies under one budget: `compare(config, workdir)`.

Pre-trains once on the source task, then fine-tunes on the target task with every
strategy in `config.strategies`, every learning rate in `config.lr_grid` and every
seed in `config.seeds`. Each strategy's learning rate is the one with the best mean
validation accuracy (validation is held out from the target's training split); its
test accuracy is reported as mean and std over seeds. Each run lives in its own
sub-folder, so an interrupted sweep resumes where it stopped.
"""
import json
import os
from typing import Dict

import numpy as np
from absl import logging

from jaxtl.finetune.trainer import train_and_evaluate
from jaxtl.metrics import write_results


def run_cached(config, workdir: str, data=None, train_fn=train_and_evaluate) -> Dict:
  """`train_fn(config, workdir, data=data)`, or the metrics of that run if it already finished."""
  done = os.path.join(workdir, "results.json")
  if os.path.exists(done):  # finished earlier: reuse
    with open(done) as f:
      return json.load(f)["metrics"]
  return train_fn(config, workdir, data=data)


def best_of_grid(base_config, overrides, lr_grid, seeds, init_from: str, root: str,
                 data=None, train_fn=train_and_evaluate) -> Dict:
  """Fine-tunes with every (lr, seed); the lr with the best mean validation accuracy wins.
  Returns its test accuracy mean / std over seeds and the validation curve over lr."""
  per_lr = {}
  for lr in lr_grid:
    runs = []
    for seed in seeds:
      run_config = base_config.copy_and_resolve_references()
      run_config.update(dict(overrides))
      run_config.init_from, run_config.learning_rate, run_config.seed = init_from, lr, seed
      run_dir = os.path.join(root, f"lr{lr:g}_seed{seed}")
      runs.append(run_cached(run_config, run_dir, data, train_fn))
    per_lr[lr] = runs
  mean_val = {lr: float(np.mean([r["val_accuracy"] for r in rs])) for lr, rs in per_lr.items()}
  best_lr = max(mean_val, key=mean_val.get)
  test = [r["test_accuracy"] for r in per_lr[best_lr]]
  return {"learning_rate": best_lr, "val_accuracy": mean_val[best_lr],
          "test_accuracy": float(np.mean(test)), "test_accuracy_std": float(np.std(test)),
          "seeds": list(seeds), "test_accuracy_per_seed": test,
          "trainable_params": per_lr[best_lr][0]["trainable_params"],
          "val_accuracy_per_lr": {f"{lr:g}": v for lr, v in mean_val.items()}}


def compare(config, workdir: str) -> Dict:
  """Runs the sweep; writes `workdir/results.json` and `workdir/results.md`."""
  source_dir = config.pretrain.init_from or os.path.join(workdir, "pretrain")
  if not config.pretrain.init_from:
    source = run_cached(config.pretrain, source_dir)
    logging.info("source task: test accuracy %.4f", source["test_accuracy"])
  results = {}
  for label, overrides in config.strategies:
    results[label] = best_of_grid(config.finetune, overrides, config.lr_grid, config.seeds,
                                  source_dir, os.path.join(workdir, "runs", label))
    logging.info("%s: lr %g, test accuracy %.4f +- %.4f", label, results[label]["learning_rate"],
                 results[label]["test_accuracy"], results[label]["test_accuracy_std"])
  table = format_table(results)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(table + "\n")
  write_results(workdir, config, results, "compare")
  print(table)
  return results


def format_table(results: Dict) -> str:
  rows = ["| strategy | trainable params | lr (picked on val) | val acc | test acc (mean +- std) |",
          "|---|---:|---:|---:|---:|"]
  for label, r in results.items():
    rows.append(f"| {label} | {r['trainable_params']:,} | {r['learning_rate']:g} | "
                f"{100 * r['val_accuracy']:.1f} | {100 * r['test_accuracy']:.1f} +- "
                f"{100 * r['test_accuracy_std']:.1f} |")
  return "\n".join(rows)
