"""Layers shared by the models: a conv with a choice of kernel, batch norm with explicit
semantics and a fast 2x2 pool.

Convolutions (`conv` argument of the conv models):
  * `"xla"` (default): `lax.conv_general_dilated`, XLA's native convolution.
  * `"im2col"`: patches by strided slicing, then one matrix product. Under `vmap` over
    tasks with per-task weights (MAML's inner loop) XLA turns a native conv into a
    grouped conv, which its CPU backend runs ~12x slower than a loop; patches @ kernel
    become a batched matrix product instead, and the backward of a strided conv
    becomes slices and products. Meta-training on CPU uses it (`jaxtl.meta.train` turns
    its config's `conv="auto"` into im2col on CPU before building the model); plain
    training of a ResNet is faster with `"xla"` (docs/benchmarks.md).
  * `"auto"`: per convolution, by the shape of its output, on CPU: im2col where the output
    is at most `AUTO_IM2COL_PIXELS` (4x4) per image, XLA's above: XLA's CPU kernel is
    pathological on tiny maps with many channels (ResNet-18's last stage at 64x64
    inputs, `benchmarks/torchvision_resnet.py`) and the better one on large maps. On
    other backends, XLA's.
  * `"measured"`: per convolution shape, whichever of the two runs its forward and
    backward pass faster on this machine, timed at first use and kept on disk
    (`conv_choice`).
Both compute the same function with the same parameters (`kernel` HWIO, `bias`), as
`flax.linen.Conv` with the same padding, so checkpoints move between them.

Batch norm modes (`train` argument of every model):
  * `train=True`: normalise with the current batch's statistics. Running averages
    are updated only if the caller passes `mutable=["batch_stats"]`; MAML and its
    family call it this way and drop the update (transductive batch norm, as in
    Finn et al. 2017, also at test time).
  * `train=False`: normalise with the stored running averages, which stay fixed.
    Fine-tuning with `batch_norm="frozen"` trains the weights in this mode
    (running statistics frozen, as in the surgical fine-tuning reference code). The
    ResNets then fold each batch norm into its convolution (`conv_bn`): the same
    function of the same variables, faster on CPU.
"""
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.errors import ConfigError
from jaxtl.models import conv_choice

CONV_IMPLS = ("xla", "im2col", "auto", "measured")
AUTO_IM2COL_PIXELS = 16
BATCH_NORM_EPSILON = 1e-5


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def im2col_conv(x, kernel, stride: tuple[int, int], padding="SAME"):
  """Convolution of NHWC `x` with an HWIO `kernel` as patches @ kernel; `padding` is
  "SAME" or explicit ((top, bottom), (left, right)), as `lax.conv_general_dilated`."""
  kh, kw, cin, cout = kernel.shape
  n, h, w, _ = x.shape
  sh, sw = stride
  if padding == "SAME":
    padding = (_same_padding(h, kh, sh), _same_padding(w, kw, sw))
  (top, bottom), (left, right) = padding
  ho, wo = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
  x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  patches = [x[:, i: i + (ho - 1) * sh + 1: sh, j: j + (wo - 1) * sw + 1: sw, :]
             for i in range(kh) for j in range(kw)]
  patches = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
  out = patches.reshape(n * ho * wo, kh * kw * cin) @ kernel.reshape(kh * kw * cin, cout)
  return out.reshape(n, ho, wo, cout)


def xla_conv(x, kernel, stride: tuple[int, int], padding="SAME"):
  return jax.lax.conv_general_dilated(x, kernel, stride, padding,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


CONVS = {"xla": xla_conv, "im2col": im2col_conv}


def measure_convs(x_shape, kernel_shape, strides, padding, dtype, repeats: int = 5) -> dict:
  """{kernel: milliseconds} of one forward and backward pass (gradients for input and
  kernel) at these shapes, the median of `repeats` timed calls after a warm-up; the
  kernels' calls interleaved so that a slow phase of the machine hits both."""
  x = jax.random.normal(jax.random.PRNGKey(0), x_shape, dtype)
  kernel = jax.random.normal(jax.random.PRNGKey(1), kernel_shape, dtype)
  steps = {name: jax.jit(jax.grad(lambda x, k, f=f: jnp.sum(f(x, k, strides, padding) ** 2),
                                  argnums=(0, 1)))
           for name, f in CONVS.items()}
  times = {name: [] for name in steps}
  for name, step in steps.items():
    jax.block_until_ready(step(x, kernel))
  for _ in range(repeats):
    for name, step in steps.items():
      start = time.perf_counter()
      jax.block_until_ready(step(x, kernel))
      times[name].append(1e3 * (time.perf_counter() - start))
  return {name: float(np.median(t)) for name, t in times.items()}


class Conv(nn.Module):
  """`nn.Conv(features, kernel_size, strides, padding)` with a choice of kernel (module
  docstring); same parameter names, shapes and initialisation. `padding`: "SAME" or
  explicit ((top, bottom), (left, right))."""
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  use_bias: bool = True
  impl: str = "xla"
  padding: str | tuple = "SAME"

  @nn.compact
  def __call__(self, x, scale=None, shift=None):
    """conv(x) (+ bias); with `scale` and `shift` (per output channel), conv(x, kernel *
    scale) + shift: a batch norm folded in (`conv_bn`)."""
    shape = (*self.kernel_size, x.shape[-1], self.features)
    kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
    if scale is not None:
      kernel = kernel * scale
    if self.impl not in CONV_IMPLS:
      raise ConfigError(f"Unknown conv {self.impl!r}; valid: {list(CONV_IMPLS)}.")
    padding = self.padding if isinstance(self.padding, str) else tuple(map(tuple, self.padding))
    dtype = jnp.result_type(x, kernel)  # float64 inputs (references) convolve in float64
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    impl = self.impl
    if impl == "auto":
      out = jax.eval_shape(lambda: jax.lax.conv_general_dilated(
          x, kernel, tuple(self.strides), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")))
      small = out.shape[1] * out.shape[2] <= AUTO_IM2COL_PIXELS
      impl = "im2col" if small and jax.default_backend() == "cpu" else "xla"
    if impl == "measured":
      args = (x.shape, kernel.shape, tuple(self.strides), padding, x.dtype)
      impl = conv_choice.choose(conv_choice.shape_key(*args), lambda: measure_convs(*args))
    y = CONVS[impl](x, kernel, tuple(self.strides), padding)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return y if shift is None else y + shift


class RunningStatistics(nn.Module):
  """`nn.BatchNorm`'s variables (the same names, shapes, dtypes and initial values), read
  as its running-statistics mode's per-channel map y = x * multiplier + shift."""
  features: int
  epsilon: float = BATCH_NORM_EPSILON

  @nn.compact
  def __call__(self):
    shape = (self.features,)
    mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), shape)
    var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), shape)
    scale = self.param("scale", nn.initializers.ones, shape, jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, shape, jnp.float32)
    multiplier = jax.lax.rsqrt(var.value + self.epsilon) * scale
    return multiplier, bias - mean.value * multiplier


def conv_bn(conv: Conv, train: bool, name: str, x):
  """`batch_norm(train, name)(conv(x))`. With running statistics (`train=False`) the
  batch norm is folded into the convolution, conv(x, kernel * m) + (bias - mean * m)
  with m = scale / sqrt(var + eps): the same function of the same variables (and so the
  same gradients for the kernel, scale and bias), but the per-element normalisation
  and, when the scale trains, its per-element reduction in the backward pass become
  kernel-sized products (`benchmarks/bn_fold.py` measures what that saves)."""
  if train:
    return batch_norm(train, name)(conv(x))
  multiplier, shift = RunningStatistics(conv.features, name=name)()
  return conv(x, multiplier, shift)


def batch_norm(train: bool, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=BATCH_NORM_EPSILON, name=name)


def max_pool_2x2(x):
  """2x2 non-overlapping max pool as reshape + max (odd sizes are cropped).

  Equivalent to `nn.max_pool(x, (2, 2), (2, 2))`, and about twice as fast end to
  end on XLA's CPU backend because its backward pass is a plain select.
  """
  n, h, w, c = x.shape
  x = x[:, : h - h % 2, : w - w % 2, :]
  return jnp.max(x.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))


class CosineHead(nn.Module):
  """logits = scale * cos(x, w_c): Baseline++'s classifier (Chen et al. 2019), a kernel
  (d, classes) and no bias; the norms have an epsilon so that a zero vector has a
  gradient."""
  num_classes: int
  scale: float = 10.0

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (x.shape[-1], self.num_classes))
    unit = lambda v, axis: v * jax.lax.rsqrt(jnp.sum(jnp.square(v), axis, keepdims=True) + 1e-12)
    return self.scale * unit(x, -1) @ unit(kernel, 0)
