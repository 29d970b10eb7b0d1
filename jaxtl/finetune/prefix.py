"""Frozen prefixes computed once: the output of a model's leading blocks, for the grid
(`jaxtl.finetune.grid`) and the trainer, which then run only the blocks after them
(`model(x, start=k)`). Exact when those blocks are frozen and deterministic (batch norm
with running statistics, no augmentation); the callers check that."""
import functools
import inspect

import jax
import jax.numpy as jnp
from absl import logging

_WARNED = set()


def sliceable(model) -> bool:
  """Does `model` run a slice of its blocks (`start` / `stop` and `block_names()`)?"""
  params = inspect.signature(type(model).__call__).parameters
  ok = "start" in params and "stop" in params and hasattr(model, "block_names")
  if not ok and type(model).__name__ not in _WARNED:
    _WARNED.add(type(model).__name__)
    logging.info("%s takes no start/stop: its frozen blocks run at every step.",
                 type(model).__name__)
  return ok


def prefix_features(model, variables, images, stop: int, batch_size: int = 1000):
  """The output of blocks [0, stop) on `images` with running statistics, in batches."""
  if stop == 0:
    return jnp.asarray(images)
  fn = _prefix_fn(model, stop)
  parts = [fn(variables, jnp.asarray(images[i:i + batch_size]))
           for i in range(0, len(images), batch_size)]
  return jnp.concatenate(parts)


@functools.lru_cache(maxsize=None)
def _prefix_fn(model, stop):
  return jax.jit(lambda v, x: model.apply(v, x, train=False, stop=stop))
