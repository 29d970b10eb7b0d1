"""Layers shared by the models: batch norm with explicit semantics and a fast 2x2 pool.

Batch norm modes (`train` argument of every model):
  * `train=True`: normalise with the current batch's statistics. Running averages
    are updated only if the caller passes `mutable=["batch_stats"]`; MAML and its
    family call it this way and drop the update (transductive batch norm, as in
    Finn et al. 2017, also at test time).
  * `train=False`: normalise with the stored running averages, which stay fixed.
    Fine-tuning with `batch_norm="frozen"` trains the weights in this mode
    (running statistics frozen, as in the surgical fine-tuning reference code).
"""
import flax.linen as nn
import jax.numpy as jnp


def batch_norm(train: bool, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def max_pool_2x2(x):
  """2x2 non-overlapping max pool as reshape + max (odd sizes are cropped).

  Equivalent to `nn.max_pool(x, (2, 2), (2, 2))`, and about twice as fast end to
  end on XLA's CPU backend because its backward pass is a plain select.
  """
  n, h, w, c = x.shape
  x = x[:, : h - h % 2, : w - w % 2, :]
  return jnp.max(x.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))
