"""Each objective's settings picked on the source, never on a target: `tune(config, workdir)`.

For every objective in `config.tune.grids` ({objective: {setting: values}}; `learning_rate`
is the trainer's, the others `objective_kwargs`), every combination of the values
pre-trains the study's network for `config.tune.steps` steps on the tuning's images, and
is scored by a cheap proxy of what transfer needs: nearest-class-mean accuracy on
held-out source images (class means from one half of each class, scored on the other),
on the frozen features the transfer's head sees. Which images (`study.tuning_sets`): the
whole source less `config.tune.holdout` images per class, or, for a study that draws a
fixed number of images or characters, a draw like its most diverse one (a seed of its
own) and held-out images from outside it. One pick per objective and study.

A pick on the edge of an ordered setting's grid adds a value past it (geometric steps,
within `config.tune.limits`), at most `config.tune.widen` times; still on an edge, it
fails the study, naming it (`config.tune.fail_on_edge`). The best `config.tune.confirm`
candidates then run at the study's own pre-training length, which makes the pick, and
the edges are those of the pick as well as of the short runs' best; every candidate
confirmed in any round stays in the running. Every
candidate is a cell keyed like the study's (`cache.cached_cell`), and the picks are
recorded in results.json and in the config of every run pre-trained with them.
"""
import itertools
import os
import shutil

import jax
import numpy as np
from absl import logging

from jaxtl import cache, checkpoint
from jaxtl.data import ImageDataset
from jaxtl.errors import ConfigError
from jaxtl.finetune import trainer
from jaxtl.finetune.tuning import past_edge
from jaxtl.meta import prototypes
from jaxtl.models import block_names, build_model

TRAINER_SETTINGS = ("learning_rate",)  # the rest of a grid's settings are objective_kwargs


def holdout_split(data: ImageDataset, per_class: int, seed: int):
  """(train, held_out): `per_class` images of every class held out (drawn with `seed`),
  the rest for pre-training."""
  rng = np.random.default_rng([seed, per_class])
  held = []
  for label in np.unique(data.labels):
    index = np.flatnonzero(data.labels == label)
    if len(index) <= per_class:
      raise ConfigError(f"tune.holdout={per_class} leaves no training image of class "
                        f"{label} ({len(index)} images).")
    held.extend(rng.choice(index, per_class, replace=False))
  mask = np.zeros(len(data), bool)
  mask[held] = True
  return data.subset(np.flatnonzero(~mask)), data.subset(np.flatnonzero(mask))


def features(model, variables, images: np.ndarray, batch: int = 500) -> np.ndarray:
  """The frozen features `model`'s head would see (`head_input` of the last block's map),
  batch norm in running-statistics mode."""
  last = len(block_names(model)) - 1
  embed = jax.jit(lambda x: model.head_input(model.apply(variables, x, train=False, stop=last)))
  return np.concatenate([np.asarray(embed(images[i:i + batch]))
                         for i in range(0, len(images), batch)])


def ncm_accuracy(feats: np.ndarray, labels: np.ndarray) -> float:
  """Nearest class mean on `feats` (`jaxtl.meta.prototypes`): each class's mean from its
  first half of images (in order), every image of the second halves scored against all
  the means (Euclidean)."""
  classes, index = np.unique(labels, return_inverse=True)
  first = np.zeros(len(labels), bool)
  for c in range(len(classes)):
    members = np.flatnonzero(index == c)
    first[members[: len(members) // 2]] = True
  means = prototypes.class_means(feats[first], index[first], len(classes))
  query = feats[~first]
  predicted = np.concatenate([  # in chunks: (queries, classes, features) distances
      np.argmax(prototypes.to_means(means, query[i:i + 256]), 1)
      for i in range(0, len(query), 256)])
  return float(np.mean(predicted == index[~first]))


def candidates(grid: dict) -> list[dict]:
  """Every combination of a grid's values, as {setting: value}."""
  names = sorted(grid)
  return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def apply_setting(cfg, setting: dict):
  """`cfg` (a pre-training config) with `setting`'s values in place (unlocked in place)."""
  with cfg.unlocked():
    for name, value in setting.items():
      if name in TRAINER_SETTINGS:
        cfg[name] = value
      elif name in cfg.objective_kwargs:
        cfg.objective_kwargs[name] = value
      else:
        raise ConfigError(f"tune setting {name!r} is neither a trainer setting "
                          f"{list(TRAINER_SETTINGS)} nor an objective option "
                          f"{sorted(cfg.objective_kwargs)}.")
  return cfg


_UNBOUNDED = (0.0, float("inf"))


def _ordered(values) -> bool:
  """Numbers with an order, whose edges mean something (not True / False)."""
  return len(values) > 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                 for v in values)


def on_edge(grid: dict, pick: dict, limits=None) -> list[str]:
  """The ordered settings of `pick` at the first or last value of their grid, unless that
  value is the setting's limit (`limits`: {setting: (low, high)}), past which nothing is
  valid (a mask ratio of 0.95 is where it must be, not under-tuned)."""
  limits = limits or {}
  return [name for name, values in grid.items() if _ordered(values) and
          past_edge(values, pick[name], limits.get(name, _UNBOUNDED)) is not None]


def widen(grid: dict, pick: dict, names, limits=None) -> dict:
  """`grid` with one more value past the edge `pick` sits on, for each setting of
  `names` (`jaxtl.finetune.tuning.past_edge`, the one widening step)."""
  limits = limits or {}
  out = dict(grid)
  for name in names:
    new = past_edge(grid[name], pick[name], limits.get(name, _UNBOUNDED))
    out[name] = tuple(sorted(set(grid[name]) | ({new} if new is not None else set())))
  return out


def setting_label(setting: dict) -> str:
  """A setting's name in the cells and in results.json's "scores" and "confirmed"."""
  return "_".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}"
                  for k, v in sorted(setting.items()))


def select(grid: dict, limits: dict, score, steps: int, full: int, confirm: int,
           times: int, what: str) -> dict:
  """One objective's pick: every combination of `grid` scored at `steps` (`score(setting,
  steps)`), the best `confirm` again at the study's length `full` (0: no confirmation),
  the best of those picked. While the short runs' best or the pick sits on an ordered
  setting's edge, the grid widens past it (at most `times` times) and all is redone
  (cached cells: nothing is scored twice)."""
  past_pick = []  # the values added past an edge pick: confirmed at full length too
  confirmed = {}  # every round's: a candidate confirmed once is never dropped
  for widened in range(times + 1):
    scores = {setting_label(s): (s, score(s, steps)) for s in candidates(grid)}
    ranked = sorted(scores.values(), key=lambda c: -c[1])
    best = ranked[0][0]
    if full:
      confirmed.update({setting_label(s): (s, score(s, full))
                        for s in [s for s, _ in ranked[:confirm]] + past_pick})
    pick = max(confirmed.values(), key=lambda c: c[1])[0] if confirmed else best
    # The pick is what transfer uses; the short runs' best says where the grid leans.
    edge = sorted(set(on_edge(grid, best, limits)) | set(on_edge(grid, pick, limits)))
    if not edge or widened == times:
      break
    logging.info("tuning %s: pick %s (short runs' best %s) on the edge of %s; widening.",
                 what, pick, best, edge)
    past_pick += [dict(pick, **{name: past_edge(grid[name], pick[name],
                                                limits.get(name, _UNBOUNDED))})
                  for name in on_edge(grid, pick, limits)]
    for setting in (best, pick):
      grid = widen(grid, setting, on_edge(grid, setting, limits), limits)
  logging.info("tuned %s on the source's held-out images: pick %s%s", what, pick,
               f"; on the edge: {edge}" if edge else "")
  return {"pick": pick, "on_edge": edge, "grid": {k: list(v) for k, v in grid.items()},
          "scores": {k: a for k, (_, a) in scores.items()},
          "confirmed": {k: a for k, (_, a) in confirmed.items()}}


def proxy_cell(config, workdir: str, train: ImageDataset, held_out: ImageDataset, key: dict,
               objective: str, setting: dict, steps: int) -> dict:
  """The tuning's proxy of one candidate, a cell (`cache.cached_cell`): the study's network
  pre-trained with `objective` and `setting` for `steps` steps on `train`, its frozen
  features scored by nearest class means on `held_out` (`ncm_accuracy`). 0 steps: the
  initialisation, with the batch statistics of clean source images where the pre-training
  config asks for them, as every candidate has."""
  name = "_".join(part for part in ("tune", objective, setting_label(setting), f"{steps}steps")
                  if part)

  def compute():
    cfg = config.pretrain.copy_and_resolve_references()
    with cfg.unlocked():
      cfg.objective, cfg.seed, cfg.num_steps = objective, config.data_seed, steps
      cfg.checkpoint_every = max(1, min(cfg.checkpoint_every, steps))
    apply_setting(cfg, setting)
    folder = os.path.join(workdir, "tune_runs", name)
    # The run's own test set is some of its training images, as the study's runs have:
    # held-out images of other classes (new characters) would widen a supervised head.
    sanity = train.subset(np.arange(min(500, len(train))))
    trainer.train_and_evaluate(cfg, folder, data=(train, train.subset(np.arange(0)), sanity))
    variables = checkpoint.load_variables(folder)
    model = build_model(cfg.model, num_classes=1, **dict(cfg.model_kwargs))
    body = {"params": {k: v for k, v in variables["params"].items() if k != "head"},
            "batch_stats": variables.get("batch_stats", {})}
    accuracy = ncm_accuracy(features(model, body, held_out.images), held_out.labels)
    shutil.rmtree(folder)  # the cell keeps the score; the weights are not used again
    return {"setting": setting, "ncm_accuracy": accuracy, "held_out": len(held_out),
            "steps": steps}
  return cache.cached_cell(workdir, name, compute, dict(key, steps=steps))


def untrained(config, workdir: str, train: ImageDataset, held_out: ImageDataset,
              key: dict) -> float:
  """The proxy's score of the network before any step (`proxy_cell` at 0 steps): the
  level a pick's score is read against."""
  return proxy_cell(config, workdir, train, held_out, key, "supervised", {}, 0)["ncm_accuracy"]


def tune(config, workdir: str, train: ImageDataset, held_out: ImageDataset,
         key: dict) -> dict:
  """{objective: {"pick", "scores", "on_edge", "grid", "confirmed"}} for the objectives of
  `config.tune.grids` that the study runs: each candidate pre-trained on `train` (labels:
  its classes, for supervised) and scored on `held_out` (`study.tuning_sets`).

  Every combination of the grid runs `tune.steps` steps; the best `tune.confirm`
  candidates run again at the study's own length (`pretrain.num_steps`) and the best of
  those is the pick; while it or the short runs' best sits on an ordered setting's edge,
  a value is added past it (`select`, `widen`, at most `tune.widen` times)."""
  # The ceiling is supervised pre-training: it takes supervised's pick.
  wanted = set(config.objectives) | ({"supervised"} if "ceiling" in config.objectives else set())
  objectives = [o for o in config.tune.grids if o in wanted]
  if not objectives:
    return {}
  limits = {k: tuple(v) for k, v in config.tune.limits.items()}
  picks = {}
  for objective in objectives:
    grid = {k: tuple(v) for k, v in config.tune.grids[objective].items()}
    full = config.pretrain.num_steps if config.pretrain.num_steps != config.tune.steps else 0
    picks[objective] = select(
        grid, limits, lambda s, n, o=objective: proxy_cell(
            config, workdir, train, held_out, key, o, s, n)["ncm_accuracy"],
        config.tune.steps, full, config.tune.confirm, config.tune.widen, objective)
  edges = {o: p["on_edge"] for o, p in picks.items() if p["on_edge"]}
  if edges and config.tune.fail_on_edge:
    raise ConfigError(f"Tuning picked a grid edge: {edges} (picks "
                      f"{ {o: picks[o]['pick'] for o in edges} }) after widening "
                      f"{config.tune.widen} times; widen those grids in config.tune.grids.")
  return picks
