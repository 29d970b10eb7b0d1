"""Pre-training objectives, one trainer (`jaxtl.finetune.trainer`, `--config.objective`).

An objective is what a training step asks of the network's outputs: it turns a batch of
images (and labels, which only `supervised` reads) into the network's inputs and the
targets, and scores the outputs. The network is the same as everywhere else: its head
becomes the objective's output layer (class logits, 4 rotation logits, a projection, a
linear pixel decoder), which fine-tuning re-initialises (`reinit=("^head/",)`), as
SimCLR discards its projection head. So every objective's checkpoint loads with
`--config.init_from` like a supervised one.

  supervised: cross-entropy on the labels (optionally augmented).
  rotation:   predict which of 4 rotations each image had (Gidaris et al. 2018).
  simclr:     NT-Xent between two augmented views (Chen et al. 2020).
  mae:        reconstruct masked patches and/or denoise (masked-image modelling).

Layer 4: imports layers 0-3 only (`base` holds what the objectives share).
"""
import jax

from jaxtl.errors import ConfigError
from jaxtl.objectives import mae, network, rotation, simclr
from jaxtl.objectives.base import (OPTIONS, Objective, classification_metrics, cross_entropy,
                                   supervised)

__all__ = ["OBJECTIVES", "OPTIONS", "Objective", "classification_metrics", "cross_entropy",
           "make", "make_eval_fn", "network_for", "supervised"]

OBJECTIVES = ("supervised", "rotation", "simclr", "mae", "masked_denoise")


def make(name: str, options, num_classes: int, input_shape) -> Objective:
  """The objective `name` with `options` (OPTIONS' keys; missing ones take their
  defaults), for `num_classes` labelled classes and images of `input_shape` (H, W, C)."""
  registry = dict(zip(OBJECTIVES, (supervised, rotation.objective, simclr.objective,
                                   mae.objective, mae.masked_denoise)))
  if name not in registry:
    raise ConfigError(f"Unknown objective {name!r}; valid: {', '.join(OBJECTIVES)}.")
  options = dict(options or {})
  unknown = sorted(set(options) - set(OPTIONS))
  if unknown:
    raise ConfigError(f"Unknown objective_kwargs {unknown}; valid: {', '.join(OPTIONS)}.")
  return registry[name](num_classes, tuple(input_shape), {**OPTIONS, **options})


def network_for(model, objective: Objective):
  """The network `objective` trains: `model` itself, or its blocks under the objective's
  own head (`network.ObjectiveNet`)."""
  return model if objective.head is None else network.ObjectiveNet(model, objective.head())


def make_eval_fn(apply, objective: Objective, batch_size: int, key):
  """evaluate(params, batch_stats, dataset) -> the mean of `objective.metrics` over the
  full batches of `dataset` (a few images of the last partial batch are left out:
  contrastive metrics need whole batches), batch i's inputs drawn from fold_in(key, i).
  `apply(params, batch_stats, x) -> outputs`; compiled once."""
  @jax.jit
  def batch_metrics(params, batch_stats, x, y, k):
    inputs, targets = objective.prepare(k, x, y)
    return objective.metrics(apply(params, batch_stats, inputs), targets)

  def evaluate(params, batch_stats, dataset):
    if not len(dataset):
      return {}
    size = min(batch_size, len(dataset))
    totals, count = {}, 0
    for i, start in enumerate(range(0, len(dataset) - size + 1, size)):
      values = batch_metrics(params, batch_stats, dataset.images[start:start + size],
                             dataset.labels[start:start + size], jax.random.fold_in(key, i))
      totals = {k: totals.get(k, 0.0) + float(v) for k, v in values.items()}
      count += 1
    return {k: v / count for k, v in totals.items()}
  return evaluate
