"""LP-FT as Kumar et al. (2022) define it: a linear probe trained to convergence on frozen
features (`jaxtl.finetune.probe`: full-batch logistic regression, its L2 penalty picked
on validation), then every layer fine-tuned from it with a learning-rate grid of its own.

`head_inputs` gives the features the head sees (after pooling) for jaxtl's models with a
linear `head`: it runs the head block with an identity kernel, so whatever pooling or
flattening the model does before its head is kept exactly. The probe is solved on
standardised features and mapped back to a head of the network (`probe_head`).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.errors import ConfigError
from jaxtl.finetune import grid, probe


def head_inputs(model, variables, images, batch_size: int = 1000) -> np.ndarray:
  """(N, D) float32: the input of the model's linear `head` for `images` (running BN
  statistics), computed once: the frozen body of a linear probe."""
  names = list(model.block_names())
  if names[-1] != "head" or "kernel" not in variables["params"].get("head", {}):
    raise ConfigError(f"LP-FT needs a linear 'head' block; {type(model).__name__} has "
                      f"blocks {names}.")
  start = len(names) - 1
  maps = grid.prefix_features(model, variables, images, start, batch_size)
  dim = variables["params"]["head"]["kernel"].shape[0]
  fn = _identity_head(model.clone(num_classes=dim), start)
  params = dict(variables["params"], head={"kernel": jnp.eye(dim), "bias": jnp.zeros(dim)})
  wide = dict(variables, params=params)
  return np.concatenate([np.asarray(fn(wide, maps[i:i + batch_size]))
                         for i in range(0, len(maps), batch_size)])


@functools.lru_cache(maxsize=None)
def _identity_head(model, start):
  return jax.jit(lambda v, x: model.apply(v, x, train=False, start=start))


def standardizer(train_features):
  """(mean, std) of the training features (std floored): the probe's input scaling."""
  mean = train_features.mean(0)
  std = np.maximum(train_features.std(0), 1e-6)
  return mean, std


def probe_head(kernel, bias, mean, std) -> dict:
  """The head {"kernel", "bias"} computing on raw features what the probe computes on
  standardised ones: (f - mean) / std @ K + b = f @ (K / std) + (b - (mean / std) @ K)."""
  kernel, bias = np.asarray(kernel, np.float64), np.asarray(bias, np.float64)
  raw = kernel / std[:, None]
  return {"kernel": raw.astype(np.float32),
          "bias": (bias - (mean / std) @ kernel).astype(np.float32)}


def fit_probes(train_feats, train_labels, num_classes, l2_grid, eval_sets):
  """Probes for every L2 in `l2_grid` on one seed's training features; returns
  ({set name: accuracy per l2}, heads per l2). `eval_sets`: name -> (features, labels),
  raw features (standardised here with the training statistics)."""
  mean, std = standardizer(train_feats)
  z = lambda f: jnp.asarray((f - mean) / std, jnp.float32)
  kernels, biases = probe.fit_grid(z(train_feats), jnp.asarray(train_labels), num_classes,
                                   jnp.asarray(l2_grid, jnp.float32))
  scores = {name: [float(probe.accuracy(z(f), jnp.asarray(y), k, b))
                   for k, b in zip(kernels, biases)] for name, (f, y) in eval_sets.items()}
  heads = [probe_head(k, b, mean, std) for k, b in zip(kernels, biases)]
  return scores, heads
