"""Pure Flax models with named blocks (`block1`, ..., `head`) and a registry by name:
Conv4, ResNet, MLP, the black-box learner and torchvision's ResNets.

Layer 1: imports only `jaxtl.errors` and its own modules.
"""
import dataclasses
import functools

import jax

from jaxtl.errors import ConfigError
from jaxtl.models.conv4 import Conv4
from jaxtl.models.mlp import MLP
from jaxtl.models.resnet import ResNet
from jaxtl.models.torchvision import DEPTHS, TorchResNet

MODELS = {"conv4": Conv4, "resnet": ResNet, "mlp": MLP,
          # torchvision's / timm's ResNets, to load their weights (models/torchvision.py)
          **{f"torchvision_resnet{d}": functools.partial(TorchResNet, depth=d) for d in DEPTHS}}


def build_model(name: str, **kwargs):
  """Returns the model `name` (one of MODELS) built with `kwargs`."""
  if name not in MODELS:
    raise ConfigError(f"Unknown model {name!r}; valid models: {sorted(MODELS)}.")
  module = getattr(MODELS[name], "func", MODELS[name])
  fields = ([f.name for f in dataclasses.fields(module) if f.name not in ("parent", "name")]
            if dataclasses.is_dataclass(module) else None)
  unknown = sorted(set(kwargs) - set(fields)) if fields is not None else []
  if unknown:
    raise ConfigError(f"Model {name!r} has no options {unknown} (model_kwargs); its options: "
                      f"{fields}.")
  return MODELS[name](**kwargs)


def block_names(model, params=None) -> tuple[str, ...]:
  """The model's blocks in input-to-output order, the head last: `model.block_names()`
  where the module defines it (jaxtl's models: block1, ..., head), else the top-level
  parameter groups of `params` in creation order (any Flax module: the last group it
  creates is its head)."""
  if hasattr(model, "block_names"):
    return tuple(model.block_names())
  if not params:
    raise ConfigError(f"{type(model).__name__} has no block_names(); its blocks are its "
                      "top-level parameter groups, so pass its params.")
  return tuple(params)


def batch_statistics(model, params, batch_stats, x):
  """The statistics with which train mode normalises `x`, in the layout of `batch_stats`,
  so that `model.apply(..., x, train=False)` with them computes what train mode computes.

  Flax's BatchNorm returns only its updated running averages, r' = m r + (1 - m) b for
  the batch's mean and variance b, with a momentum m that each layer may set. r' is
  affine in r: one forward pass from r = 0 with the tangent dr = 1 gives (1 - m) b and m
  exactly, so b = r'(0) / (1 - m) for any momentum and any module whose statistics update
  that way."""
  def updated(running):
    _, new = model.apply({"params": params, "batch_stats": running}, x, train=True,
                         mutable=["batch_stats"])
    return new["batch_stats"]
  # In x's precision: Flax keeps statistics in float32, and a float32 tangent rounds m.
  dtype = lambda s: jax.numpy.promote_types(s.dtype, x.dtype)
  zeros = jax.tree_util.tree_map(lambda s: jax.numpy.zeros(s.shape, dtype(s)), batch_stats)
  ones = jax.tree_util.tree_map(lambda s: jax.numpy.ones(s.shape, dtype(s)), batch_stats)
  scaled, momentum = jax.jvp(updated, (zeros,), (ones,))
  return jax.tree_util.tree_map(lambda s, m: s / (1 - m), scaled, momentum)
