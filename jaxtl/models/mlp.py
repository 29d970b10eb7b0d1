"""A ReLU MLP (MAML's sinusoid regressor: 2 hidden layers of 40 units)."""
from typing import Sequence

import flax.linen as nn


class MLP(nn.Module):
  """Hidden layers are `block1`, `block2`, ...; the output layer is `head`.

  Images are flattened, so the same class serves MAML's MLP Omniglot row.
  """
  num_outputs: int = 1
  hidden: Sequence[int] = (40, 40)

  def block_names(self):
    return tuple(f"block{i + 1}" for i in range(len(self.hidden))) + ("head",)

  @nn.compact
  def __call__(self, x, train: bool = True):
    del train  # no batch norm
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f"block{i + 1}")(x))
    return nn.Dense(self.num_outputs, name="head")(x)
