"""The surgical study's tasks: a shift spec (`kind:dataset[:corruption]`) checked and made
into a source and a target (`jaxtl.data.shifts`), the target's validation and per-run
training draws, and the evaluation sets (the target's test set and LP-FT's OOD sets)."""
import dataclasses

import numpy as np

from jaxtl.data.corruptions import corrupt, corruption_names
from jaxtl.data.datasets import load_dataset, usps_to_28
from jaxtl.data.shifts import SHIFTS, make_shift
from jaxtl.errors import ConfigError
from jaxtl.finetune.data import stratified_take


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
  if kind not in SHIFTS:
    raise ConfigError(f"Unknown shift kind {kind!r} in {spec!r}; valid kinds: {SHIFTS}.")
  if kind == "input" and corruption not in corruption_names():
    raise ConfigError(f"Unknown corruption {corruption!r} in {spec!r}; valid corruptions: "
                      f"{corruption_names()} (or register your own: --config.imports).")


def shift_task(config, spec: str):
  """The ShiftTask of a spec (`jaxtl.data.shifts.make_shift`), its target drawn from the
  `target_pool` images held out of pre-training."""
  kind, dataset, corruption = parse_shift(spec)
  kwargs = dict(data_dir=config.data_dir, source=config.source, seed=config.shift_seed,
                target_pool=config.target_pool)
  if corruption:
    kwargs["corruption"] = corruption
  elif kind == "input":
    raise ConfigError(f"Input shift {spec!r} needs a corruption: input:{dataset}:NAME.")
  return make_shift(kind, dataset, **kwargs)


def run_seed(pretrain_seed: int, seed: int) -> int:
  """The seed of run (pre-training p, fine-tuning s): its own examples, head and order."""
  return 100 * pretrain_seed + seed


def target_split(task, num_train: int, num_val: int, seeds, data_seed: int):
  """(val indices, {run seed: train indices}) into task.target_train."""
  labels = task.target_train.labels
  val = np.sort(stratified_take(labels, num_val, np.random.default_rng(data_seed)))
  rest = np.setdiff1d(np.arange(len(labels)), val)
  train = {s: np.sort(rest[stratified_take(labels[rest], num_train,
                                           np.random.default_rng([data_seed, s]))])
           for s in seeds}
  return val, train


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
