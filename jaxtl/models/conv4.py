"""The 4-block conv net of MAML (Finn et al. 2017) and ProtoNets (Snell et al. 2017)."""
import flax.linen as nn

from jaxtl.errors import ConfigError
from jaxtl.models.layers import Conv, CosineHead, batch_norm, max_pool_2x2


class ConvBlock(nn.Module):
  """3x3 conv -> batch norm -> ReLU, downsampled by a stride-2 conv or a 2x2 max pool.
  `norm="layer"`: layer norm over each example's map instead of batch norm, so that no
  example's output depends on the others in its batch."""
  features: int
  downsample: str  # "stride" or "maxpool"
  conv: str = "xla"
  norm: str = "batch"

  @nn.compact
  def __call__(self, x, train: bool):
    strides = (2, 2) if self.downsample == "stride" else (1, 1)
    x = Conv(self.features, (3, 3), strides, impl=self.conv, name="conv")(x)
    if self.norm == "layer":
      x = nn.relu(nn.LayerNorm(reduction_axes=(-3, -2, -1), name="ln")(x))
    else:
      x = nn.relu(batch_norm(train, "bn")(x))
    return max_pool_2x2(x) if self.downsample == "maxpool" else x


class Conv4(nn.Module):
  """Parameters live under `block1` ... `block4` and `head`.

  `downsample="stride"` is MAML's Omniglot network (28x28 -> 2x2x64 features);
  `downsample="maxpool"` its mini-ImageNet one (84x84 -> 5x5x`features`).
  `num_classes=0` drops the head and returns the embedding, pooled per `pool` (ProtoNets).
  `conv`: how convolutions are computed (`jaxtl.models.layers`: xla | im2col).
  `pool="mean"` averages the last feature map over space (MAML's Omniglot code: 64
  features); "flatten" keeps it whole (2x2x64 = 256 on Omniglot).
  `head_init_std`: the head's kernel ~ N(0, std^2) (MAML's Omniglot code: 1.0); 0 keeps
  flax's LeCun normal. The head's scale sets how far a fixed inner step moves the logits.
  `head="cosine"`: `cosine_scale` x the cosine similarity of the features to each class's
  weight vector (Baseline++), instead of a linear layer.
  """
  num_classes: int
  features: int = 64
  downsample: str = "stride"
  conv: str = "xla"
  pool: str = "flatten"
  head_init_std: float = 0.0
  head: str = "linear"
  cosine_scale: float = 10.0
  norm: str = "batch"           # batch | layer (ConvBlock)

  def block_names(self):
    return ("block1", "block2", "block3", "block4") + (("head",) if self.num_classes else ())

  def head_input(self, x):
    """The last block's map as the head sees it: pooled per `pool`."""
    return x.mean((1, 2)) if self.pool == "mean" else x.reshape(x.shape[0], -1)

  @nn.compact
  def __call__(self, x, train: bool = True, start: int = 0, stop: int | None = None):
    """Blocks `block_names()[start:stop]` on `x` (the input of block `start`), as
    `ResNet`: a frozen prefix computed once is fed back with `start`."""
    if self.downsample not in ("stride", "maxpool"):
      raise ConfigError(f"Conv4 downsample={self.downsample!r}; valid: 'stride', 'maxpool'.")
    if self.pool not in ("flatten", "mean"):
      raise ConfigError(f"Conv4 pool={self.pool!r}; valid: 'flatten', 'mean'.")
    if self.norm not in ("batch", "layer"):
      raise ConfigError(f"Conv4 norm={self.norm!r}; valid: 'batch', 'layer'.")
    blocks = range(5)[start:stop]  # 4: the pooling and the head (the embedding if none)
    for i in blocks:
      if i < 4:
        x = ConvBlock(self.features, self.downsample, self.conv, self.norm,
                      name=f"block{i + 1}")(x, train)
    if 4 not in blocks:
      return x
    x = self.head_input(x)
    if not self.num_classes:
      return x
    if self.head == "cosine":
      return CosineHead(self.num_classes, self.cosine_scale, name="head")(x)
    if self.head != "linear":
      raise ConfigError(f"Conv4 head={self.head!r}; valid: 'linear', 'cosine'.")
    init = (nn.initializers.normal(self.head_init_std) if self.head_init_std
            else nn.linear.default_kernel_init)
    return nn.Dense(self.num_classes, kernel_init=init, name="head")(x)
