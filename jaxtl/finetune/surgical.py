"""Which layers to fine-tune under which shift (Lee et al. 2023), and LP-FT in and out of
distribution (Kumar et al. 2022): `study(config, workdir)`.

For every shift in `config.shifts` (specs `kind:dataset[:corruption]`, jaxtl.data.shifts):
  1. pre-train on the shift's source training set (once per distinct source; a run folder
     of `jaxtl.finetune.trainer`, so it checkpoints and resumes);
  2. hold out `num_val` target training examples for validation (the same for every seed)
     and draw each seed's `num_train` labelled target examples from the rest;
  3. for every strategy row, fine-tune every (learning rate, weight decay) on the
     `selection_seeds` as one compiled program (`jaxtl.finetune.grid`), keep the pair
     with the best mean validation accuracy (the paper's code picks per seed; picking on
     one seed and training the others at the pick costs a fifth as much), and train the
     other seeds with it;
  4. report the full target test accuracy: mean and 95% t-interval over seeds, and the
     paired difference to fine-tuning everything (`all`), seed by seed.
Per shift also: the relative gradient norm of each block at the start of fine-tuning
(what Auto-RGN scales by) and how far each block's weights move under `all`.

`config.ood` adds evaluation sets for the LP-FT question: each is another test set of the
same classes (`usps`, or a corruption name applied to the target test set).
Every (shift, strategy) grid is saved to `workdir/grids/` when done: an interrupted study
resumes at the next grid.
"""
import dataclasses
import importlib
import json
import os
import re

import jax
import numpy as np
from absl import logging

from jaxtl import checkpoint, partition, runtime, workdir as run_dir
from jaxtl.data.corruptions import corrupt, corruption_names
from jaxtl.data.datasets import load_dataset, usps_to_28
from jaxtl.data.shifts import SHIFTS, ShiftTask, make_shift
from jaxtl.errors import ConfigError
from jaxtl.finetune import grid, strategies, surgical_report
from jaxtl.finetune.compare import check_strategies, run_cached
from jaxtl.finetune.data import split_train_val, stratified_take
from jaxtl.finetune.surgical_report import ci95
from jaxtl.finetune.trainer import forward
from jaxtl.metrics import write_results, write_text
from jaxtl.models import build_model


def parse_shift(spec: str):
  """`kind:dataset[:corruption]` -> (kind, dataset, corruption or '')."""
  parts = spec.split(":")
  if len(parts) not in (2, 3) or not all(parts):
    raise ConfigError(f"Shift spec {spec!r} is not kind:dataset[:corruption], e.g. "
                      "'input:mnist:shot_noise', 'feature:fashion_mnist', 'natural:mnist'.")
  return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def check_shift(spec: str):
  """A spec's kind and corruption checked before anything runs or is written."""
  kind, _, corruption = parse_shift(spec)
  kinds = SHIFTS + ("lpft",)
  if kind not in kinds:
    raise ConfigError(f"Unknown shift kind {kind!r} in {spec!r}; valid kinds: {kinds}.")
  if kind == "input" and corruption not in corruption_names():
    raise ConfigError(f"Unknown corruption {corruption!r} in {spec!r}; valid corruptions: "
                      f"{corruption_names()} (or register your own: --config.imports).")


def shift_task(config, spec: str):
  """The ShiftTask of a spec; `lpft:DATASET` is the LP-FT task: the source of the
  feature shift (half the classes), the target every class of the clean dataset."""
  kind, dataset, corruption = parse_shift(spec)
  kwargs = dict(data_dir=config.data_dir, source=config.source, seed=config.shift_seed)
  if kind == "lpft":
    src = make_shift("feature", dataset, **kwargs)
    clean = make_shift("output", dataset, **kwargs)
    return ShiftTask("lpft", src.source_train, src.source_test, clean.source_train,
                     clean.source_test, clean.num_classes, src.source_key)
  if corruption:
    kwargs["corruption"] = corruption
  elif kind == "input":
    raise ConfigError(f"Input shift {spec!r} needs a corruption: input:{dataset}:NAME.")
  return make_shift(kind, dataset, **kwargs)


def target_split(task, num_train: int, num_val: int, seeds, data_seed: int):
  """(val indices, {seed: train indices}) into task.target_train."""
  labels = task.target_train.labels
  val = np.sort(stratified_take(labels, num_val, np.random.default_rng(data_seed)))
  rest = np.setdiff1d(np.arange(len(labels)), val)
  train = {s: np.sort(rest[stratified_take(labels[rest], num_train,
                                           np.random.default_rng([data_seed, s]))])
           for s in seeds}
  return val, train


def pretrained(config, workdir, task):
  """Pre-trains on the task's source (cached by folder, one per source and objective);
  returns (variables, source test accuracy, None for a self-supervised objective)."""
  root = config.pretrain_root or os.path.join(workdir, "pretrain")
  name = task.source_key + ("" if config.pretrain.objective == "supervised" else
                            f"_{config.pretrain.objective}")
  folder = os.path.join(root, re.sub(r"\W", "_", name))
  s_train, s_val = split_train_val(task.source_train, 0, config.pretrain.num_val,
                                   config.pretrain.data_seed)
  metrics = run_cached(config.pretrain, folder, (s_train, s_val, task.source_test))
  return checkpoint.load_variables(folder), metrics.get("test_accuracy")


def reinit(config) -> tuple:
  """`config.reinit`, plus the head after a self-supervised objective (its head is the
  objective's output layer, not a classifier)."""
  extra = () if config.pretrain.objective == "supervised" else (r"^head/",)
  return tuple(dict.fromkeys(tuple(config.reinit) + extra))


def worst_group(correct, task_test):
  """Waterbirds' metric: the lowest accuracy over groups (label, nuisance == label)."""
  nuisance = task_test.metadata["nuisance"]
  groups = task_test.labels * 2 + (nuisance == task_test.labels)
  return min(correct[groups == g].mean() for g in np.unique(groups))


def eval_sets(config, task):
  """name -> ImageDataset: the target test set, plus the `config.ood` sets."""
  sets = {"test": task.target_test}
  for name in config.ood:
    if name == "usps":
      ds = load_dataset("usps", "test", data_dir=config.data_dir, source=config.source)
      sets[name] = dataclasses.replace(ds, images=usps_to_28(ds.images))
    else:
      clean = task.target_test
      sets[name] = dataclasses.replace(
          clean, images=corrupt(clean.images, name, config.shift_seed + 7))
  return sets


def block_of(path: str) -> str:
  return path.split("/", 1)[0]


def block_norms(tree, blocks) -> dict:
  flat = partition.flatten(tree)
  return {b: float(np.sqrt(sum(np.sum(np.square(v)) for p, v in flat.items()
                               if block_of(p) == b))) for b in blocks}


def relative_gradient_norms(model, variables, images, labels, batch_size, batch_norm,
                            num_batches: int = 5) -> dict:
  """Per block ||grad|| / ||w|| at the start of fine-tuning, averaged over the first
  `num_batches` batches (as Auto-RGN's measurement in the paper's code)."""
  import optax  # pylint: disable=import-outside-toplevel

  def loss(params, x, y):
    logits, _ = forward(model, params, variables.get("batch_stats", {}), x,
                        batch_norm == "train")
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  grad = jax.jit(jax.grad(loss))
  blocks = model.block_names()
  w = block_norms(variables["params"], blocks)
  out = {b: 0.0 for b in blocks}
  for i in range(num_batches):
    sl = slice(i * batch_size, (i + 1) * batch_size)
    g = block_norms(grad(variables["params"], images[sl], labels[sl]), blocks)
    for b in blocks:
      out[b] += g[b] / w[b] / num_batches
  return out


def run_strategy(config, model, variables, overrides, task, split, sets):
  """One strategy's grid: train all (lr, wd, seed), pick per seed on validation, test."""
  row_config = config.finetune.copy_and_resolve_references()
  row_config.update(dict(overrides))
  spec = grid.GridSpec(
      tuple(strategies.phases(row_config, model.block_names())), row_config.batch_size,
      row_config.batch_norm, reinit(config),
      row_config.strategy if row_config.strategy in ("auto_rgn", "auto_snr") else "",
      row_config.auto_period, row_config.auto_measure_steps, row_config.snr_threshold,
      config.chunk)
  val_index, train_index = split
  pool = task.target_train
  val = pool.subset(val_index)
  hp = [(lr, wd) for lr in config.lr_grid for wd in config.wd_grid]

  def run(seeds, lrs, wds):
    stacked = grid.train_grid(model, variables, spec, pool.images, pool.labels, lrs, wds,
                              seeds, np.stack([train_index[s] for s in seeds]))
    flat = grid.flat_configs(stacked)
    acc = grid.evaluate_grid(model, flat, val.images, val.labels, chunk=config.chunk)
    return flat, acc.mean(1).reshape(len(seeds), len(lrs))

  # The whole (lr, wd) grid on the selection seeds; the pick by their mean validation
  # accuracy; the other seeds at the pick only (one compiled program each).
  select = [s for s in config.seeds if s in config.selection_seeds]
  others = [s for s in config.seeds if s not in select]
  flat, val_acc = run(select, [h[0] for h in hp], [h[1] for h in hp])
  best = int(np.argmax(val_acc.mean(0)))
  lr, wd = hp[best]
  picked = jax.tree_util.tree_map(lambda a: a[best::len(hp)], flat)
  val_per_seed = list(val_acc[:, best])
  if others:
    more, more_acc = run(others, [lr], [wd])
    picked = jax.tree_util.tree_map(lambda a, b: np.concatenate([a, b]), picked, more)
    val_per_seed += list(more_acc[:, 0])
  per_seed = [{"seed": s, "val_accuracy": float(v)} for s, v in zip(select + others,
                                                                       val_per_seed)]
  for name, ds in sets.items():
    correct = grid.evaluate_grid(model, picked, ds.images, ds.labels, chunk=config.chunk)
    for row, c in zip(per_seed, correct):
      row[f"{name}_accuracy"] = float(c.mean())
      if name == "test" and "nuisance" in ds.metadata:
        row["test_worst_group_accuracy"] = float(worst_group(c, ds))
  changed = grid.changed_leaves(variables, grid.take(picked, 0))
  out = {"learning_rate": lr, "weight_decay": wd, "per_seed": per_seed,
         "changed_params": grid.count_values(variables["params"], changed["params"]),
         "changed_stats": grid.count_values(variables.get("batch_stats", {}),
                                            changed["batch_stats"]),
         "changed_blocks": sorted({block_of(p) for p in changed["params"] + changed["batch_stats"]}),
         "selection_val_accuracy": {f"lr{h[0]:g}_wd{h[1]:g}": float(a)
                                    for h, a in zip(hp, val_acc.mean(0))}}
  for key in per_seed[0]:
    if key.endswith("_accuracy"):
      values = [r[key] for r in per_seed]
      out[key] = float(np.mean(values))
      out[key + "_ci95"] = ci95(values)
  if row_config.strategy == "full":  # how far each block moved, mean over seeds
    blocks = model.block_names()
    w0 = block_norms(variables["params"], blocks)
    moved = [block_norms(jax.tree_util.tree_map(lambda a, b: a - b, grid.take(picked, i)["params"],
                                                variables["params"]), blocks)
             for i in range(len(per_seed))]
    out["weight_movement"] = {b: float(np.mean([m[b] for m in moved]) / w0[b]) for b in blocks}
  return out


def _load_json(path):
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  return None


def _save_json(path, value):
  if runtime.is_writer():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
      json.dump(value, f, indent=2)
    os.replace(path + ".tmp", path)


def grid_key(config, overrides) -> dict:
  """What a saved grid depends on: a saved grid of another key is an error, not reused."""
  keep = ("data_dir", "source", "shift_seed", "num_train", "num_val", "seeds",
          "selection_seeds", "lr_grid", "wd_grid", "reinit", "ood")
  key = {k: config[k] for k in keep}
  key.update(pretrain=config.pretrain.to_dict(), finetune=config.finetune.to_dict(),
             overrides=dict(overrides))
  return json.loads(json.dumps(key, default=str))


def _with_defaults(key: dict) -> dict:
  """A saved grid key with the fields its configs predate (`FIELD_DEFAULTS`) filled in."""
  return {**key, **{name: {**run_dir.FIELD_DEFAULTS, **key[name]}
                    for name in ("pretrain", "finetune")
                    if isinstance(key.get(name), dict)}}


def study_shift(config, workdir, spec):
  task = shift_task(config, spec)
  variables, source_acc = pretrained(config, workdir, task)
  model = build_model(config.finetune.model, num_classes=task.num_classes,
                      **dict(config.finetune.model_kwargs))
  fresh = model.init(jax.random.PRNGKey(0), task.target_train.images[:1], train=False)
  variables, _ = checkpoint.load_pretrained(fresh, variables, reinit(config))
  split = target_split(task, config.num_train, config.num_val, config.seeds,
                       config.finetune.data_seed)
  sets = eval_sets(config, task)
  rows = {}
  for label, overrides in config.strategies:
    path = os.path.join(workdir, "grids", re.sub(r"\W", "_", spec),
                        re.sub(r"\W+", "_", label).strip("_") + ".json")
    key = grid_key(config, overrides)
    saved = _load_json(path)
    if saved is not None and _with_defaults(saved["key"]) != _with_defaults(key):
      raise ConfigError(f"{path} holds a grid of another config; use another --workdir or "
                        "delete it to rerun.")
    if saved is None:
      saved = {"key": key, "result": run_strategy(config, model, variables, overrides, task,
                                                  split, sets)}
      _save_json(path, saved)
    rows[label] = saved["result"]
    logging.info("%s / %s: test %.4f +- %.4f", spec, label, rows[label]["test_accuracy"],
                 rows[label]["test_accuracy_ci95"])
  baseline = config.baseline
  if baseline in rows:
    for row in rows.values():
      diff = [a["test_accuracy"] - b["test_accuracy"]
              for a, b in zip(row["per_seed"], rows[baseline]["per_seed"])]
      row["minus_baseline"], row["minus_baseline_ci95"] = float(np.mean(diff)), ci95(diff)
  train0 = task.target_train.subset(split[1][config.seeds[0]])
  rgn_vars = grid.redraw(model, variables, reinit(config),
                         jax.random.split(jax.random.PRNGKey(config.seeds[0]))[0],
                         train0.images[:1])
  rgn = relative_gradient_norms(model, rgn_vars, train0.images, train0.labels,
                                config.finetune.batch_size, config.finetune.batch_norm)
  before = jax.tree_util.tree_map(lambda a: a[None], variables)
  zero_shot = grid.evaluate_grid(model, before, task.target_test.images,
                                 task.target_test.labels)[0].mean()
  return {"source_test_accuracy": source_acc, "num_classes": task.num_classes,
          "no_finetuning_test_accuracy": float(zero_shot),
          "target_data": {"train_pool": task.target_train.provenance(),
                          "test": task.target_test.provenance()},
          "relative_gradient_norm": rgn, "strategies": rows}


def study(config, workdir: str) -> dict:
  """The study of the module docstring; writes results.json, results.md and a plot."""
  for module in config.imports:  # user code that registers corruptions, datasets, models
    try:
      importlib.import_module(module)
    except ImportError as e:
      raise ConfigError(f"imports: cannot import {module!r} ({e}).") from e
  for spec in config.shifts:
    check_shift(spec)
  check_strategies(config.finetune, config.strategies)
  if config.baseline and config.baseline not in dict(config.strategies):
    raise ConfigError(f"baseline {config.baseline!r} is not a strategy row; rows: "
                      f"{[label for label, _ in config.strategies]}.")
  os.makedirs(workdir, exist_ok=True)
  results = {spec: study_shift(config, workdir, spec) for spec in config.shifts}
  table = surgical_report.format_tables(results)
  write_text(os.path.join(workdir, "results.md"), table + "\n")
  write_results(workdir, config, results, "surgical_study")
  if runtime.is_writer():
    surgical_report.plot(results, os.path.join(workdir, "results.png"))
  print(table)
  return results
