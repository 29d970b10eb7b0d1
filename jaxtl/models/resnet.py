"""A small pre-activation-free ResNet for transfer experiments on small images."""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxtl.models.layers import Conv, conv_bn


class BasicBlock(nn.Module):
  """Two 3x3 convs with batch norm and a (projected) residual connection."""
  features: int
  stride: int
  conv: str = "xla"

  @nn.compact
  def __call__(self, x, train: bool):
    conv = lambda size, stride, name: Conv(self.features, (size, size), (stride, stride),
                                           use_bias=False, impl=self.conv, name=name)
    y = nn.relu(conv_bn(conv(3, self.stride, "conv1"), train, "bn1", x))
    y = conv_bn(conv(3, 1, "conv2"), train, "bn2", y)
    if x.shape[-1] != self.features or self.stride != 1:
      x = conv_bn(conv(1, self.stride, "proj"), train, "proj_bn", x)
    return nn.relu(x + y)


class Stage(nn.Module):
  features: int
  stride: int
  num_blocks: int
  stem: bool = False
  conv: str = "xla"

  @nn.compact
  def __call__(self, x, train: bool):
    if self.stem:  # the stem conv belongs to the first block, so "block1" is the input end
      stem = Conv(self.features, (3, 3), use_bias=False, impl=self.conv, name="stem_conv")
      x = nn.relu(conv_bn(stem, train, "stem_bn", x))
    for i in range(self.num_blocks):
      x = BasicBlock(self.features, self.stride if i == 0 else 1, self.conv, name=f"unit{i + 1}")(x, train)
    return x


class ResNet(nn.Module):
  """Stem + stages + head; the stages are the blocks `block1` ... `blockN`, the stem is
  part of `block1`. Widths (16, 32, 64) with one unit per stage by default."""
  num_classes: int
  widths: Sequence[int] = (16, 32, 64)
  units_per_stage: int = 1
  conv: str = "xla"  # how convolutions are computed: xla | im2col | auto | measured (layers.py)

  def block_names(self):
    return tuple(f"block{i + 1}" for i in range(len(self.widths))) + ("head",)

  def head_input(self, x):
    """The last block's map as the head sees it: averaged over space."""
    return jnp.mean(x, axis=(1, 2))

  @nn.compact
  def __call__(self, x, train: bool = True, start: int = 0, stop: int | None = None):
    """Blocks `block_names()[start:stop]` on `x` (the input of block `start`): a frozen
    prefix computed once is fed back with `start` (`jaxtl.finetune.grid`)."""
    blocks = range(len(self.widths) + 1)[start:stop]
    for i in blocks:
      if i < len(self.widths):
        x = Stage(self.widths[i], 1 if i == 0 else 2, self.units_per_stage, stem=(i == 0),
                  conv=self.conv, name=f"block{i + 1}")(x, train)
      else:
        x = nn.Dense(self.num_classes, name="head")(self.head_input(x))
    return x
