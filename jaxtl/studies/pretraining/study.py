"""Do you need labels to pre-train, and does pre-training data need to be diverse?
`study(config, workdir)` (`experiments.pretraining`).

First, each objective's main settings are picked on the source (`tuning`: short
pre-trainings scored by nearest class means on held-out source images; never a target).
Then for each objective of `config.objectives` (`scratch`: no pre-training, the floor;
`scratch_bn`: the same random network with its batch-norm statistics from clean source
images, as every pre-trained network's are; `ceiling`: supervised pre-training on the
target's own training set, digits targets only), each diversity in
`config.diversity` and each seed:
  1. the pre-training images of `config.dataset`: `num_images` images (0: all of them)
     from `diversity` groups drawn with the seed: background alphabets of Omniglot
     (Lake's split; the few-shot tasks come from the evaluation alphabets, never seen in
     pre-training), or classes of MNIST / Fashion-MNIST (training split);
  2. pre-train MAML's network with the objective and its tuned setting
     (`jaxtl.finetune.trainer`, a run folder that checkpoints and resumes; supervised:
     the characters or classes);
  3. score the transfer to the targets:
     - Omniglot: `config.baselines` on few-shot tasks of the evaluation alphabets
       (`config.fewshot`: the shot sweep's tasks, `jaxtl.meta.fewshot`; 600 test tasks,
       steps and step size picked on validation characters of the background set);
     - MNIST / Fashion-MNIST: each of `config.targets` (mnist, fashion_mnist, usps at
       28x28) learnt from `num_labels` class-balanced labelled training images drawn
       with the seed, by each of `config.strategies` (linear_probe, lp_ft; the trainer's
       `config.target`, its learning rate tuned per cell on `config.target_val` other
       training images of the target), scored on the whole test split.
Every cell is saved under `workdir/cells/` when done, so a rerun resumes.
"""
import dataclasses
import functools
import os
import shutil

import jax
import numpy as np

from jaxtl import cache, workdir as run_dir
from jaxtl.data import ImageDataset, load_dataset
from jaxtl.data.datasets import usps_to_28
from jaxtl.errors import ConfigError
from jaxtl.finetune import trainer
from jaxtl.finetune.data import split_train_val
from jaxtl.finetune.tuning import tune as tune_learning_rate
from jaxtl.meta import fewshot
from jaxtl.meta.tasks import omniglot_class_splits
from jaxtl.metrics import write_results, write_text
from jaxtl.objectives import OBJECTIVES
from jaxtl.studies.pretraining import tuning
from jaxtl.studies.pretraining.tables import LEVEL_FREE, SOURCES, format_table, plot, summarize

TARGETS = ("mnist", "fashion_mnist", "usps")
TARGET_STRATEGIES = ("linear_probe", "lp_ft")


def _source(config):
  """(the source set, each image's group): Omniglot's background drawings less the
  alphabets its few-shot validation tasks use (so that no pre-training has seen the
  characters the baselines' settings are picked on), or the digits' training split."""
  if config.dataset != "omniglot":
    data = load_dataset(config.dataset, "train", data_dir=config.data_dir,
                        source=config.source)
    return data, data.labels
  data = load_dataset("omniglot", "background", data_dir=config.data_dir,
                      source=config.source)
  tasks_cfg = config.fewshot.tasks
  val = omniglot_class_splits(data, "lake", tasks_cfg.split_seed, tasks_cfg.num_val_classes,
                              tasks_cfg.num_val_alphabets)["val"]
  data = data.subset(np.flatnonzero(~np.isin(data.labels, val)))
  return data, data.metadata["alphabet"]


def _draw(config, groups: int, seed: int):
  """(the source, the indices of the images `pretraining_images` draws from it)."""
  data, group_of = _source(config)
  unit = SOURCES[config.dataset][0]
  rng = np.random.default_rng([config.data_seed, groups, seed])
  names = np.unique(group_of)
  if config.dataset == "omniglot" and config.num_characters:
    quota = [len(q) for q in np.array_split(np.arange(config.num_characters), groups)]
    eligible = [a for a in names if len(np.unique(data.labels[group_of == a])) >= quota[0]]
    if len(eligible) < groups:
      raise ConfigError(f"{groups} alphabets with {quota[0]} characters each: only "
                        f"{len(eligible)} of the source's alphabets have that many.")
    chosen = _groups(config, eligible, groups, seed, rng)
    characters = np.concatenate([rng.choice(np.unique(data.labels[group_of == a]), q,
                                            replace=False) for a, q in zip(chosen, quota)])
    index = np.flatnonzero(np.isin(data.labels, characters))
  else:
    if groups > len(names):
      raise ConfigError(f"diversity {groups}: the source has {len(names)} {unit}.")
    chosen = _groups(config, names, groups, seed, rng)
    index = np.flatnonzero(np.isin(group_of, chosen))
  if config.num_images:
    if config.num_images > len(index):
      smallest = ("background alphabet has 280 drawings" if unit == "alphabets" else
                  "class has 5,421 images (MNIST's 5)")
      raise ConfigError(f"num_images={config.num_images} exceeds the {len(index)} images "
                        f"of {unit} {sorted(chosen.tolist())}; the smallest {smallest}.")
    index = np.sort(rng.choice(index, config.num_images, replace=False))
  return data, index


DRAWS = ("random", "balanced")


def _groups(config, names: np.ndarray, groups: int, seed: int, rng) -> np.ndarray:
  """The `groups` of `names` (alphabets or classes) seed `seed` pre-trains on
  (`config.draw`): "random", its own draw from `rng`; "balanced", the seed-th block of
  `groups` consecutive names of one shuffled order shared by every seed of the level
  (wrapping round), so that the seeds cover the names evenly."""
  if config.draw == "random":
    return rng.choice(names, groups, replace=False)
  if config.draw != "balanced":
    raise ConfigError(f"draw={config.draw!r}; valid: {', '.join(DRAWS)}.")
  order = np.random.default_rng([config.data_seed, groups]).permutation(names)
  return np.take(order, np.arange(seed * groups, (seed + 1) * groups), mode="wrap")


def _relabelled(data: ImageDataset, name: str) -> ImageDataset:
  """`data` with its labels renumbered 0..C-1 in order."""
  _, labels = np.unique(data.labels, return_inverse=True)
  return ImageDataset(data.images, labels.astype(np.int32), name, source=data.source)


def pretraining_images(config, groups: int, seed: int) -> ImageDataset:
  """Images of `groups` alphabets (Omniglot) or classes (MNIST, Fashion-MNIST train)
  drawn with `seed`: every drawing of `config.num_characters` characters spread evenly
  over the alphabets (Omniglot, if set: the same classes and images per class at every
  diversity), else `config.num_images` images (0: all) of the groups. Labels: the
  characters or classes, relabelled 0..C-1."""
  data, index = _draw(config, groups, seed)
  unit = SOURCES[config.dataset][0]
  return _relabelled(data.subset(index), f"{config.dataset}-{groups}-{unit}")


def tuning_sets(config):
  """(pre-training images, held-out images) of the tuning (`tuning.tune`), from the
  source only. A study that pre-trains on all of the source tunes on it less
  `tune.holdout` images per class. A study that draws a fixed number of images or
  characters tunes on a draw like its most diverse one, with a seed of its own
  (`tune.seed`, none of the study's), pre-trained whole, and scores images outside that
  draw: `tune.holdout` per class of the digits' other training images (every class, the
  drawn ones or not), or every drawing of `tune.holdout_characters` Omniglot characters
  the draw has none of (new classes, as the few-shot targets are). A small draw could
  spare few images, and a score on few is noise."""
  if not (config.num_images or config.num_characters):
    whole = pretraining_images(config, len(np.unique(_source(config)[1])), 0)
    return tuning.holdout_split(whole, config.tune.holdout, config.data_seed)
  groups = max(config.diversity)
  data, index = _draw(config, groups, config.tune.seed)
  rest = data.subset(np.setdiff1d(np.arange(len(data)), index))
  train = _relabelled(data.subset(index),
                      f"{config.dataset}-{groups}-{SOURCES[config.dataset][0]}")
  if config.dataset != "omniglot":
    return train, tuning.holdout_split(rest, config.tune.holdout, config.data_seed)[1]
  characters = np.setdiff1d(np.unique(rest.labels), np.unique(data.labels[index]))
  wanted = config.tune.holdout_characters
  if not 2 <= wanted <= len(characters):
    raise ConfigError(f"tune.holdout_characters={wanted}; valid: 2 to {len(characters)} "
                      "(the source's characters outside the tuning draw).")
  rng = np.random.default_rng([config.data_seed, config.tune.seed, wanted])
  scored = rng.choice(characters, wanted, replace=False)
  return train, _relabelled(rest.subset(np.flatnonzero(np.isin(rest.labels, scored))),
                            "omniglot-held-out-characters")


def ceiling_images(config, target: str) -> ImageDataset:
  """The ceiling's pre-training set: the target's own training images and labels, all of
  them (digits targets only)."""
  if target == "omniglot":
    raise ConfigError("objective 'ceiling' needs a target with a training set of its own; "
                      "Omniglot's few-shot tasks have none apart from the drawings they are "
                      "scored on, so a ceiling trained on them would be an oracle.")
  return target_data(config, target)[0]


def pretrain(config, workdir: str, objective: str, groups: int, seed: int,
             setting: dict, target: str) -> str:
  """The folder of the network pre-trained with `objective` and its tuned `setting`
  ("" for `scratch`); `ceiling`: supervised on `target`'s own training set, whatever
  `groups`; `scratch_bn`: no step of training, only the statistics of
  `pretrain.clean_batch_stats` clean images of the most diverse draw (the network and
  head `scratch`'s target runs initialise, since the seed and shapes are theirs)."""
  if objective == "scratch":
    return ""
  cfg = config.pretrain.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.seed, cfg.objective = seed, objective if objective in OBJECTIVES else "supervised"
    if objective == "scratch_bn":
      cfg.num_steps, groups = 0, max(config.diversity)
  tuning.apply_setting(cfg, setting)
  if objective == "ceiling":
    images, name = ceiling_images(config, target), f"ceiling_{target}_seed{seed}"
  else:
    images = pretraining_images(config, groups, seed)
    name = f"{objective}_{groups}{SOURCES[config.dataset][0]}_seed{seed}"
  # The run's own test set: 500 of its training images (a sanity number; the study's
  # numbers are the transfer ones, on images it never saw).
  test = images.subset(np.arange(min(500, len(images))))
  folder = os.path.join(workdir, "pretrain", name)
  if run_dir.finished_results(cfg, folder) is None:
    trainer.train_and_evaluate(cfg, folder, data=(images, images.subset(np.arange(0)), test))
  return folder


def fewshot_network(config, folder: str, seed: int):
  """(model, params, batch_stats) for the few-shot baselines: the network in `folder`, or
  a random one (`scratch`)."""
  if folder:
    return fewshot.load_network(config.fewshot, folder)[:3]
  cfg = config.pretrain  # its body's initialisation does not depend on the head's size
  model = fewshot.task_model(cfg.model, num_classes=1, **dict(cfg.model_kwargs))
  image = np.zeros((1,) + fewshot.image_shape(config.fewshot), np.float32)  # initialisers read shapes only
  variables = model.init(jax.random.PRNGKey(seed), image, train=False)
  return model, variables["params"], variables.get("batch_stats", {})


def target_data(config, name: str):
  """(train, test) of target `name`, USPS brought to MNIST's 28x28; read once per process."""
  if name not in TARGETS:
    raise ConfigError(f"Unknown target {name!r}; valid: {list(TARGETS)}.")
  return _read_target(name, config.data_dir, config.source)


@functools.lru_cache(maxsize=None)
def _read_target(name: str, data_dir: str, source: str):
  splits = [load_dataset(name, split, data_dir=data_dir, source=source)
            for split in ("train", "test")]
  if name == "usps":
    splits = [dataclasses.replace(s, images=usps_to_28(s.images)) for s in splits]
  return tuple(splits)


def target_cell(config, workdir: str, key: str, folder: str, target: str, labels: int,
                strategy: str, seed: int) -> dict:
  """Test accuracy on `target` after `strategy` on `labels` labelled images, from the
  network in `folder` (random for ""), with a 95% binomial interval over the test set; the
  learning rate tuned on `config.target_val` other training images of the target (the
  one rule, `jaxtl.finetune.tuning.tune`), every value's validation accuracy kept."""
  train, test = target_data(config, target)
  train, val = split_train_val(train, labels, config.target_val, seed)
  runs = {}

  def evaluate(lr):
    cfg = config.target.copy_and_resolve_references()
    with cfg.unlocked():
      cfg.model, cfg.model_kwargs = config.pretrain.model, config.pretrain.model_kwargs
      cfg.strategy, cfg.seed, cfg.init_from, cfg.learning_rate = strategy, seed, folder, lr
    run = os.path.join(workdir, "target_runs", f"{key}_lr{lr:g}")
    shutil.rmtree(run, ignore_errors=True)  # an interrupted run starts over: it is short
    runs[lr] = trainer.train_and_evaluate(cfg, run, data=(train, val, test))
    shutil.rmtree(run)  # the cell keeps the numbers; the weights are not used again
    return float(runs[lr]["val_accuracy"])

  lr, _, scores, edge = tune_learning_rate(config.target_lr_grid, config.target_lr_limits,
                                           evaluate, f"{key} learning rate")
  accuracy = float(runs[lr]["test_accuracy"])
  return {"accuracy": accuracy, "tasks": len(test),
          "ci95": float(1.96 * np.sqrt(accuracy * (1 - accuracy) / len(test))),
          "learning_rate": lr, "on_edge": bool(edge),
          "val_accuracy": {f"{v:g}": float(a) for v, a in sorted(scores.items())}}


def _settings(config, workdir, prefix, folder, seed, cells):
  """(setting, compute) of every transfer cell of one pre-trained network; `folder()`
  pre-trains it on first use."""
  if config.dataset == "omniglot":
    network = []
    for way in config.fewshot.ways:
      for shot in config.fewshot.shots:
        for name in config.baselines:
          def compute(name=name, way=way, shot=shot):
            if not network:
              network.append(fewshot_network(config, folder("omniglot"), seed))
            picks = {"linear_probe": cells.get(f"{prefix}_linear_probe_{way}w{shot}s", {})}
            return fewshot.baseline_cell(config.fewshot, name, way, shot, network[0], picks)
          yield f"{name}_{way}w{shot}s", compute
    return
  for target in config.targets:
    for labels in config.num_labels:
      for strategy in config.strategies:
        setting = f"{strategy}_{target}{labels}"
        yield setting, (lambda target=target, labels=labels, strategy=strategy, setting=setting:
                        target_cell(config, workdir, f"{prefix}_{setting}", folder(target),
                                    target, labels, strategy, seed))


# Fields that only say which cells a study has: not part of a cell's key (nor is `tune`:
# a cell's key holds the setting tuning picked for its objective).
ENUMERATING = ("objectives", "diversity", "seeds", "targets", "num_labels", "strategies",
               "tune")
ROWS = LEVEL_FREE  # the floors (no pre-training) and the ceiling (the target's own)


def cell_prefix(objective: str, groups: int, unit: str, seed: int) -> str:
  """A cell name's start; "_" in an objective's name becomes "-" (names split on "_")."""
  return f"{objective.replace('_', '-')}_{groups}{unit[0]}_s{seed}"


def study(config, workdir: str) -> dict:
  """Every cell (resuming from `workdir/cells/`), each objective's setting tuned on the
  source first (`tuning`); writes results.json and results.md."""
  if config.dataset not in SOURCES:
    raise ConfigError(f"Unknown pre-training dataset {config.dataset!r}; valid: "
                      f"{list(SOURCES)}.")
  unknown = sorted(set(config.objectives) - set(OBJECTIVES + ROWS))
  if unknown:
    raise ConfigError(f"Unknown objectives {unknown}; valid: {', '.join(ROWS + OBJECTIVES)}.")
  unit, most = SOURCES[config.dataset]
  bad = [n for n in config.diversity if not 1 <= n <= most]
  if bad:
    raise ConfigError(f"diversity {bad}: each must be a number of {unit} in 1..{most}.")
  if config.dataset != "omniglot":
    wrong = sorted(set(config.strategies) - set(TARGET_STRATEGIES))
    if wrong:
      raise ConfigError(f"Unknown strategies {wrong}; valid: {list(TARGET_STRATEGIES)}.")
  os.makedirs(workdir, exist_ok=True)
  base = cache.config_key(config, ENUMERATING)
  # Tuning's own steps replace the pre-training's, and its images are keyed by their
  # hash: a variant of another length on the same images shares the candidates
  # (config.tune.root); one on other images does not.
  train, held_out = tuning_sets(config)
  tune_key = {"pretrain": cache.config_key(config.pretrain, ("num_steps", "checkpoint_every",
                                                              "log_every")),
              "images": cache.tree_hash([train.images, train.labels, held_out.images,
                                         held_out.labels]),
              "data_seed": config.data_seed, "steps": config.tune.steps}
  picks = tuning.tune(config, config.tune.root or workdir, train, held_out, tune_key)
  untrained = tuning.untrained(config, config.tune.root or workdir, train, held_out, tune_key)
  cells = {}
  for objective in config.objectives:
    tuned = picks.get("supervised" if objective == "ceiling" else objective, {}).get("pick", {})
    for groups in config.diversity:
      for seed in config.seeds:
        prefix = cell_prefix(objective, groups, unit, seed)
        pretrained = {}

        def folder(target, objective=objective, groups=groups, seed=seed, tuned=tuned,
                   pretrained=pretrained):
          if target not in pretrained:  # pre-trained when a cell first needs it
            pretrained[target] = pretrain(config, workdir, objective, groups, seed, tuned,
                                          target)
          return pretrained[target]
        key = {"config": base, "tuned": tuned}
        # The floor and the ceiling do not depend on the diversity: one cell serves all.
        stored = cell_prefix(objective, max(config.diversity), unit, seed) if (
            objective in ROWS) else prefix
        for setting, compute in _settings(config, workdir, prefix, folder, seed, cells):
          cells[f"{prefix}_{setting}"] = cache.cached_cell(
              workdir, f"{stored}_{setting}", compute, key)
  table = summarize(cells)
  write_results(workdir, config, {"cells": cells, "summary": table, "tuning": picks,
                                  "untrained_proxy": untrained},
                "pretraining")
  write_text(os.path.join(workdir, "results.md"), format_table(table, config.dataset) + "\n")
  if len(config.diversity) > 1:
    plot(table, os.path.join(workdir, "results.png"), unit)
  return table
