"""Fine-tuning against meta-learning as the target set shrinks: accuracy against the
number of shots on the meta-learning benchmark (`experiments.shots`).

Every method is scored on the tasks `meta_eval` draws (class split, `eval_seed`, 600
tasks, mean and 95% CI) with `shot` support images and `query` query images per class:
  * transfer baselines (`jaxtl.meta.baselines`) on one classifier pre-trained on the
    meta-training characters (their rotations as classes, as meta-training sees them;
    the same network as MAML's), by the fine-tuning trainer. Each baseline picks its
    step size from `lr_grid` and its number of steps (0..`steps`) on `val_tasks` tasks of
    validation characters (`tasks.num_val_classes`, taken out of the training ones),
    never on the test split; LP-FT probes with the linear probe's picks, then picks its
    own. Baseline++ (`cosine`) has its own network, pre-trained with a cosine head.
  * the meta-learned checkpoints of `checkpoints`, re-evaluated at each shot count with
    their own test-time procedure.
Each cell is a JSON file under `workdir/cells/`, written when done: a rerun resumes.
"""
import json
import os

import jax
import numpy as np
from absl import logging

from jaxtl import checkpoint, workdir as run_dir
from jaxtl.data import ImageDataset
from jaxtl.errors import ConfigError
from jaxtl.finetune import trainer
from jaxtl.meta import tasks, train
from jaxtl.meta.baselines import BASELINES, Baseline
from jaxtl.metrics import write_results
from jaxtl.models import build_model

TUNED = ("linear_probe", "cosine", "finetune", "lp_ft")  # those with steps and a step size


def task_config(config, way: int, shot: int, split: str = "test", steps: int = 0,
                lr: float = 0.0):
  """`config.tasks` for `way`-way `shot`-shot tasks of `split` (val: `val_tasks` tasks
  drawn with `val_seed`), evaluated after 0..`steps` steps of size `lr`."""
  cfg = config.tasks.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.way, cfg.test_shot, cfg.test_query, cfg.eval_split = way, shot, config.query, split
    if split == "val":
      cfg.eval_tasks, cfg.eval_seed = config.val_tasks, config.val_seed
    cfg.eval_batch = min(cfg.eval_batch, cfg.eval_tasks)
    cfg.test_inner_steps, cfg.eval_steps = steps, (0, steps)
    cfg.test_inner_lr, cfg.test_backtrack = lr, True
  return cfg


def pretrain(config, workdir: str, head: str):
  """(model, params, batch_stats) of the classifier pre-trained on the meta-training
  classes with a `head` (linear | cosine) head; resumes in `workdir/pretrain_<head>`."""
  data = train.make_task_data(task_config(config, max(config.ways), 1))
  images = np.asarray(data.train)  # (classes, examples, H, W, C), rotations included
  classes, per_class = images.shape[:2]
  labels = np.repeat(np.arange(classes), per_class).reshape(classes, per_class)
  held_out = per_class - 1  # each class's last example: the pre-training's own test
  split = lambda index: ImageDataset(images[:, index].reshape(-1, *images.shape[2:]),
                                     labels[:, index].reshape(-1), "omniglot-train-classes")
  train_set, test_set = split(slice(0, held_out)), split(slice(held_out, None))
  cfg = config.pretrain.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.model_kwargs.head = head
  sub = os.path.join(workdir, f"pretrain_{head}")
  if run_dir.finished_results(cfg, sub) is None:
    trainer.train_and_evaluate(cfg, sub, data=(train_set, train_set.subset(np.arange(0)),
                                               test_set))
  variables = checkpoint.load_variables(sub)
  model = build_model(cfg.model, num_classes=classes, **dict(cfg.model_kwargs))
  return model, variables["params"], variables.get("batch_stats", {}), data.provenance


def _summary(per_task: np.ndarray, column: int) -> dict:
  accuracy = per_task[:, column]
  return {"accuracy": float(accuracy.mean()),
          "ci95": float(1.96 * accuracy.std() / np.sqrt(len(accuracy))),
          "tasks": len(accuracy)}


_EVAL_DATA = {}  # (tasks config, split) -> class-major images: loaded once per process


def _scores(cfg, method, params, batch_stats) -> np.ndarray:
  """Query accuracy after 0..steps steps of each of cfg's evaluation tasks."""
  key = (cfg.dataset, cfg.class_split, cfg.split_seed, cfg.num_val_classes, cfg.eval_split)
  if key not in _EVAL_DATA:
    _EVAL_DATA[key] = train.make_task_data(cfg).test
  data = _EVAL_DATA[key]
  tasks.check_episode_shape(data.shape[0], data.shape[1], cfg.way, cfg.test_shot,
                            cfg.test_query)
  sampler = lambda k, d, batch: tasks.sample_classification(k, d, batch, cfg.way,
                                                            cfg.test_shot, cfg.test_query)
  return train.evaluate_per_task(cfg, method, params, batch_stats, data, sampler)


def baseline_cell(config, name, way, shot, network, picks) -> dict:
  """One baseline at one (way, shot): its step size and steps picked on validation tasks,
  then its accuracy on the test tasks."""
  model, params, batch_stats = network
  probe = picks.get("linear_probe", {})
  baseline = Baseline(name, model.clone(num_classes=way), way,
                      probe_steps=probe.get("steps", 0), probe_lr=probe.get("lr", 1.0))
  if name not in TUNED:
    per_task = _scores(task_config(config, way, shot), baseline, params, batch_stats)
    return dict(_summary(per_task, 0), steps=0, lr=None)
  steps, val = config.steps[name], {}
  for lr in config.lr_grid[name]:
    per_task = _scores(task_config(config, way, shot, "val", steps, lr), baseline, params,
                       batch_stats)
    val[lr] = per_task.mean(0)  # accuracy after 0..steps steps
  lr, best = max(((lr, int(np.argmax(curve))) for lr, curve in val.items()),
                 key=lambda pick: val[pick[0]][pick[1]])
  per_task = _scores(task_config(config, way, shot, "test", best, lr), baseline, params,
                     batch_stats)
  return dict(_summary(per_task, best), steps=best, lr=lr,
              val_accuracy={f"{k:g}": [float(a) for a in v] for k, v in val.items()})


def checkpoint_cell(config, path: str, shot: int) -> dict:
  """A meta-learned run's accuracy at `shot` shots, with its own test-time procedure."""
  saved = run_dir.load_config(path)
  split = (config.tasks.dataset, config.tasks.class_split, config.tasks.split_seed)
  if (saved.dataset, saved.class_split, saved.split_seed) != split:
    raise ConfigError(f"{path} was meta-trained on another class split "
                      f"{(saved.dataset, saved.class_split, saved.split_seed)} than {split}: "
                      "its test tasks would not be the baselines'.")
  cfg = task_config(config, saved.way, shot, steps=saved.test_inner_steps,
                    lr=saved.test_inner_lr)
  with cfg.unlocked():  # the run's own network, algorithm and test-time settings
    for field in ("model", "model_kwargs", "algorithm", "inner_table", "inner_steps",
                  "inner_lr", "inner_lr_mode", "test_backtrack", "batch_norm"):
      cfg[field] = saved[field]
  variables = checkpoint.load_variables(path)
  per_task = _scores(cfg, train.make_learner(cfg), variables["meta_params"],
                     variables.get("batch_stats", {}))
  trained = run_dir.saved_results(path).get("metrics", {})
  return dict(_summary(per_task, saved.test_inner_steps), algorithm=saved.algorithm,
              trained_shot=saved.shot, meta_iterations=trained.get("meta_iterations"))


def _cached(workdir: str, name: str, compute) -> dict:
  path = os.path.join(workdir, "cells", f"{name}.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  cell = compute()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(cell, f, indent=2)
  os.replace(path + ".tmp", path)  # a cell appears whole or not at all
  logging.info("%s: %.4f +- %.4f", name, cell["accuracy"], cell["ci95"])
  return cell


def run(config, workdir: str) -> dict:
  """Every cell of the sweep (resuming from `workdir/cells/`); writes results.json."""
  unknown = sorted(set(config.baselines) - set(BASELINES))
  if unknown:
    raise ConfigError(f"Unknown baselines {unknown}; valid: {list(BASELINES)}.")
  os.makedirs(workdir, exist_ok=True)
  heads = {"cosine" if name == "cosine" else "linear" for name in config.baselines}
  networks = {head: pretrain(config, workdir, head) for head in sorted(heads)}
  provenance = next(iter(networks.values()))[3]
  cells = {}
  for way in config.ways:
    for shot in config.shots:
      picks = {}
      for name in config.baselines:  # linear_probe before lp_ft, which probes with its picks
        network = networks["cosine" if name == "cosine" else "linear"][:3]
        key = f"{name}_{way}w{shot}s"
        cells[key] = picks[name] = _cached(
            workdir, key, lambda: baseline_cell(config, name, way, shot, network, picks))
  for label, path in config.checkpoints:
    saved = run_dir.load_config(path)
    if saved is None:
      raise ConfigError(f"checkpoints: {path} holds no meta-learning run.")
    if saved.way not in config.ways:
      continue
    for shot in config.shots:
      key = f"{label}_{saved.way}w{shot}s"
      cells[key] = _cached(workdir, key, lambda: checkpoint_cell(config, path, shot))
  write_results(workdir, config, cells, "shots", data=provenance)
  return cells
