"""A ReLU MLP (MAML's sinusoid regressor: 2 hidden layers of 40 units)."""
from typing import Sequence

import flax.linen as nn

from jaxtl.models.layers import batch_norm


class MLP(nn.Module):
  """Hidden layers are `block1`, `block2`, ...; the output layer is `head`.

  Images are flattened, so the same class serves MAML's MLP Omniglot row (hidden
  256-128-64-64, `batch_norm=True`). Each hidden block is Dense -> [batch norm] -> ReLU,
  with parameters under `blockI/dense` and `blockI/bn`.
  """
  num_outputs: int = 1
  hidden: Sequence[int] = (40, 40)
  batch_norm: bool = False

  def block_names(self):
    return tuple(f"block{i + 1}" for i in range(len(self.hidden))) + ("head",)

  @nn.compact
  def __call__(self, x, train: bool = True):
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.hidden):
      x = DenseBlock(width, self.batch_norm, name=f"block{i + 1}")(x, train)
    return nn.Dense(self.num_outputs, name="head")(x)


class DenseBlock(nn.Module):
  features: int
  batch_norm: bool

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(self.features, name="dense")(x)
    return nn.relu(batch_norm(train, "bn")(x) if self.batch_norm else x)
