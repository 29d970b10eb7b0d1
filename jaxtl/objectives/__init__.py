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
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxtl.errors import ConfigError
from jaxtl.objectives import augment as augmentations


class Objective(NamedTuple):
  name: str
  num_outputs: int  # the size of the network's head
  prepare: Callable  # (key, images, labels) -> (inputs, targets), on the device
  loss: Callable     # (outputs, targets) -> scalar
  metrics: Callable  # (outputs, targets) -> {name: scalar}, for evaluation


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def classification_metrics(logits, labels):
  return {"loss": cross_entropy(logits, labels),
          "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}


# Every objective's options, with their defaults: the config's `objective_kwargs` (so each
# can be set from the command line); an objective reads the ones it uses.
OPTIONS = {
    "augment": False,  # supervised, rotation: augment the images first (simclr always does)
    "max_rotate_deg": 15.0, "scale": (0.9, 1.3), "max_translate": 0.1,  # augmentations
    "pixel_noise": 0.05,
    "temperature": 0.5, "projection_dim": 64,  # simclr
    "mask_ratio": 0.5, "patch": 4, "noise_std": 0.0, "masked_only": True,  # mae
}


def supervised(num_classes: int, input_shape, options) -> Objective:
  """Cross-entropy on the labels, on augmented images if `options["augment"]`."""
  del input_shape

  def prepare(key, images, labels):
    if options["augment"]:
      images = augmentations.from_options(key, images, options)
    return images, labels
  return Objective("supervised", num_classes, prepare, cross_entropy, classification_metrics)


OBJECTIVES = ("supervised", "rotation", "simclr", "mae")


def make(name: str, options, num_classes: int, input_shape) -> Objective:
  """The objective `name` with `options` (OPTIONS' keys; missing ones take their
  defaults), for `num_classes` labelled classes and images of `input_shape` (H, W, C)."""
  from jaxtl.objectives import mae, rotation, simclr  # pylint: disable=import-outside-toplevel
  registry = dict(zip(OBJECTIVES, (supervised, rotation.objective, simclr.objective,
                                   mae.objective)))
  if name not in registry:
    raise ConfigError(f"Unknown objective {name!r}; valid: {', '.join(OBJECTIVES)}.")
  options = dict(options or {})
  unknown = sorted(set(options) - set(OPTIONS))
  if unknown:
    raise ConfigError(f"Unknown objective_kwargs {unknown}; valid: {', '.join(OPTIONS)}.")
  return registry[name](num_classes, tuple(input_shape), {**OPTIONS, **options})


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
