"""Compare fine-tuning strategies under one budget: `compare(config, workdir)`.

Pre-trains once on the source task, then fine-tunes on the target task with every
strategy in `config.strategies`, every learning rate in `config.lr_grid` and every
seed in `config.seeds`. Each strategy's learning rate is the one with the best mean
validation accuracy (validation is held out from the target's training split); its
test accuracy is reported as mean and std over seeds. Each run lives in its own
sub-folder, so an interrupted sweep resumes where it stopped.
"""
import os
from typing import Dict

import numpy as np
from absl import logging

from jaxtl import cache, workdir as run_dir
from jaxtl.errors import ConfigError
from jaxtl.finetune import strategies
from jaxtl.finetune.trainer import train_and_evaluate
from jaxtl.metrics import write_results, write_text
from jaxtl.models import build_model


def run_cached(config, workdir: str, data=None, train_fn=train_and_evaluate,
               on_mismatch: str = "error") -> Dict:
  """`train_fn(config, workdir, data=data)`, or the metrics of that run if it already
  finished with the same config, code (`jaxtl.cache.code_hash`) and data; another config
  there is an error, and so is another code or data unless `on_mismatch="recompute"`
  (then the folder's finished run is moved aside to `WORKDIR.stale-N` and run again)."""
  done = run_dir.finished_results(config, workdir)
  if done is not None:
    saved = run_dir.saved_results(workdir)
    want = {"code_hash": cache.code_hash(),
            "data": [d.provenance() for d in data] if data is not None else None}
    have = {"code_hash": (saved.get("stamp") or {}).get("code_hash"),
            "data": saved.get("inputs") if data is not None else None}
    diff = cache.differences(cache.normalize(have), cache.normalize(want))
    if not diff:
      return done
    if on_mismatch == "error":
      raise cache.StaleCacheError(
          f"{workdir} holds a run finished with other {', '.join(diff)}; rerun with "
          "on_mismatch=recompute, another workdir, or the code version it names.")
    n = 0
    while os.path.exists(f"{workdir}.stale-{n}"):
      n += 1
    os.replace(workdir, f"{workdir}.stale-{n}")
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
      folder = os.path.join(root, f"lr{lr:g}_seed{seed}")
      runs.append(run_cached(run_config, folder, data, train_fn))
    per_lr[lr] = runs
  mean_val = {lr: float(np.mean([r["val_accuracy"] for r in rs])) for lr, rs in per_lr.items()}
  best_lr = max(mean_val, key=mean_val.get)
  test = [r["test_accuracy"] for r in per_lr[best_lr]]
  return {"learning_rate": best_lr, "val_accuracy": mean_val[best_lr],
          "test_accuracy": float(np.mean(test)), "test_accuracy_std": float(np.std(test)),
          "seeds": list(seeds), "test_accuracy_per_seed": test,
          "trainable_params": per_lr[best_lr][0]["trainable_params"],
          "val_accuracy_per_lr": {f"{lr:g}": v for lr, v in mean_val.items()}}


def check_strategies(base_config, rows):
  """Every (label, overrides) row's strategy and blocks, checked before a sweep writes:
  a typo in the last row must not cost the runs before it."""
  model = build_model(base_config.model, num_classes=2, **dict(base_config.model_kwargs))
  for label, overrides in rows:
    row_config = base_config.copy_and_resolve_references()
    row_config.update(dict(overrides))
    try:
      strategies.phases(row_config, model.block_names())
    except ConfigError as e:
      raise ConfigError(f"strategies row {label!r}: {e}") from e


def compare(config, workdir: str) -> Dict:
  """Runs the sweep; writes `workdir/results.json` and `workdir/results.md`."""
  check_strategies(config.finetune, config.strategies)
  if not (config.pretrain.init_from or config.pretrain.dataset):
    raise ConfigError("This variant has no source task (it fine-tunes imported weights): pass "
                      "--config.pretrain.init_from=PATH (.pth, .safetensors or a finished "
                      "jaxtl pre-training run).")
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
  write_text(os.path.join(workdir, "results.md"), table + "\n")
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
