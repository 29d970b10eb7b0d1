"""Compare fine-tuning strategies under one budget: `compare(config, workdir)`.

Pre-trains on the source task once per `config.pretrain_seeds`, then fine-tunes each
pre-training on the target task with every strategy in `config.strategies`; each
strategy's learning rate is tuned per pre-training on validation held out from the
target's training split (`tuned_row`: `jaxtl.finetune.tuning.tune`, widened past an
edge pick), and its test accuracy reported with the 95% interval over pre-trainings
(`jaxtl.stats.estimate`). Each run lives in its own sub-folder, keyed by config, code and
data (`run_cached`), so an interrupted sweep resumes where it stopped.
"""
import os
from typing import Dict, Tuple

import numpy as np
from absl import logging

from jaxtl import cache, stats, workdir as run_dir
from jaxtl.errors import ConfigError
from jaxtl.finetune import strategies, tuning
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


def tuned_row(config, overrides, inits: Dict[int, str], root: str, data=None,
              train_fn=train_and_evaluate) -> Dict:
  """A strategy row: for each pre-training p (`inits`: p -> the run to fine-tune from,
  "" for from scratch), the learning rate tuned on the mean validation accuracy of its
  fine-tuning seeds (100 p + s for s in `config.seeds`) by `jaxtl.finetune.tuning.tune`,
  the one rule of every study: widened past an edge pick within `config.lr_limits`, then
  refined. The test accuracy is the `jaxtl.stats.estimate` over pre-trainings of the
  picks' runs; `picks` keeps every pre-training's validation curve."""
  picks, per_seed = [], []
  for p, init_from in inits.items():
    runs = {}

    def evaluate(lr, p=p, init_from=init_from, runs=runs):
      runs[lr] = []
      for s in config.seeds:
        run_config = config.finetune.copy_and_resolve_references()
        run_config.update(dict(overrides))
        run_config.init_from, run_config.learning_rate = init_from, lr
        run_config.seed = 100 * p + s
        folder = os.path.join(root, f"p{p}", f"lr{lr:g}_seed{run_config.seed}")
        runs[lr].append(run_cached(run_config, folder, data, train_fn))
      return float(np.mean([r["val_accuracy"] for r in runs[lr]]))

    lr, _, scores, edge = tuning.tune(config.lr_grid, config.lr_limits, evaluate,
                                      f"{root} / pre-training {p} learning rate")
    wd = dict(overrides).get("weight_decay", config.finetune.weight_decay)
    picks.append(tuning.pick_record(p, lr, wd, scores, edge))
    per_seed += [{"pretrain_seed": p, "seed": 100 * p + s, "val_accuracy": r["val_accuracy"],
                  "test_accuracy": r["test_accuracy"]} for s, r in zip(config.seeds, runs[lr])]
    trainable = runs[lr][0]["trainable_params"]
  test = stats.estimate(by_pretraining(per_seed, "test_accuracy"))
  return {**tuning.row_summary(picks), "per_seed": per_seed,
          "val_accuracy": float(np.mean([r["val_accuracy"] for r in per_seed])),
          "test_accuracy": test.mean, "test_accuracy_ci95": test.ci95,
          "trainable_params": trainable}


def by_pretraining(per_seed, key: str) -> np.ndarray:
  """`key` of the runs as a (pre-training, fine-tuning seed) array for `jaxtl.stats`."""
  order = list(dict.fromkeys(r["pretrain_seed"] for r in per_seed))
  return np.array([[r[key] for r in per_seed if r["pretrain_seed"] == p] for p in order])


def pretrained_runs(config, root: str, data=None) -> Tuple[Dict[int, str], Dict[int, float]]:
  """Pre-training seed -> its finished run's folder (`root/seedP`), one per
  `config.pretrain_seeds`, and seed -> its source test accuracy; or
  `({0: config.pretrain.init_from}, {})` for imported weights."""
  if config.pretrain.get("init_from"):
    if tuple(config.pretrain_seeds) != (0,):
      raise ConfigError(f"pretrain_seeds={tuple(config.pretrain_seeds)} with imported "
                        f"weights ({config.pretrain.init_from}): there is one pre-training, "
                        "so pretrain_seeds must be (0,).")
    return {0: config.pretrain.init_from}, {}
  inits, accuracies = {}, {}
  for p in config.pretrain_seeds:
    pretrain = config.pretrain.copy_and_resolve_references()
    pretrain.seed = p
    inits[p] = os.path.join(root, f"seed{p}")
    accuracies[p] = run_cached(pretrain, inits[p], data)["test_accuracy"]
    logging.info("source task, pre-training %d: test accuracy %.4f", p, accuracies[p])
  return inits, accuracies


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
  inits, _ = pretrained_runs(config, os.path.join(workdir, "pretrain"))
  results = {}
  for label, overrides in config.strategies:
    results[label] = tuned_row(config, overrides, inits, os.path.join(workdir, "runs", label))
    logging.info("%s: lr %g, test accuracy %.4f +- %.4f", label, results[label]["learning_rate"],
                 results[label]["test_accuracy"], results[label]["test_accuracy_ci95"])
  table = format_table(results)
  write_text(os.path.join(workdir, "results.md"), table + "\n")
  write_results(workdir, config, results, "compare")
  print(table)
  return results


def format_table(results: Dict) -> str:
  rows = ["| strategy | trainable params | lr (picked on val) | val acc | test acc (95% CI) |",
          "|---|---:|---:|---:|---:|"]
  for label, r in results.items():
    rows.append(f"| {label} | {r['trainable_params']:,} | {r['learning_rate']:g} | "
                f"{100 * r['val_accuracy']:.1f} | {100 * r['test_accuracy']:.1f} +- "
                f"{100 * r['test_accuracy_ci95']:.1f} |")
  return "\n".join(rows)
