"""torchvision's ResNets (and timm's, same layout) in Flax, with their weights.

`TorchResNet(num_classes, depth=18)` computes what `torchvision.models.resnet18()`
computes (v1.5: a bottleneck's stride sits on its 3x3 conv), on NHWC images in [0, 1]:
it first prepares them as ImageNet weights expect (grey replicated to 3 channels,
resized to `image_size`, ImageNet mean and std), so every jaxtl path (trainer, grid,
surgical studies, adapt) feeds it the same images as its own models.

Blocks, as jaxtl's strategies address them (the stem belongs to the first, as in
jaxtl's ResNet and as surgical fine-tuning's code groups ResNets):
  block1 = conv1, bn1, layer1    block2 = layer2    block3 = layer3    block4 = layer4
  head = fc

Batch norm: momentum and epsilon as torch's (0.1 / 1e-5). In train mode the output is
torch's; the running variance is updated with the batch's biased variance (Flax's), where
torch uses the unbiased one, a factor n / (n - 1) on the update: fine-tuning with
`batch_norm="frozen"` (finetune.py:torchvision) never updates them.

`variables_from_state_dict(state_dict)` maps a torchvision / timm state dict (arrays by
torch name) to this module's variables: conv weights OIHW -> HWIO, linear (out, in) ->
(in, out), batch norm's weight/bias/running_mean/running_var -> params scale/bias and
batch_stats mean/var. A tensor it cannot place is an error naming it;
`jaxtl.checkpoint.load_pretrained` then reports every missing or mis-shaped leaf.
"""
import re
from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.errors import ConfigError
from jaxtl.models.layers import Conv, conv_bn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# depth -> (unit kind, units per stage), as torchvision.models.resnet{depth}
DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
          152: ("bottleneck", (3, 8, 36, 3))}
EXPANSION = {"basic": 1, "bottleneck": 4}


def _conv(features, size, stride, name, impl):
  pad = size // 2  # torch's symmetric padding; "SAME" would pad stride-2 convs unevenly
  return Conv(features, (size, size), (stride, stride), use_bias=False, impl=impl,
              padding=((pad, pad), (pad, pad)), name=name)


class Unit(nn.Module):
  """torchvision's BasicBlock or Bottleneck; `proj` / `proj_bn` are its `downsample`."""
  kind: str
  planes: int
  stride: int
  conv: str = "xla"

  @nn.compact
  def __call__(self, x, train: bool):
    out_features = self.planes * EXPANSION[self.kind]
    conv = lambda f, size, stride, name: _conv(f, size, stride, name, self.conv)
    if self.kind == "basic":
      y = nn.relu(conv_bn(conv(self.planes, 3, self.stride, "conv1"), train, "bn1", x))
      y = conv_bn(conv(self.planes, 3, 1, "conv2"), train, "bn2", y)
    else:
      y = nn.relu(conv_bn(conv(self.planes, 1, 1, "conv1"), train, "bn1", x))
      y = nn.relu(conv_bn(conv(self.planes, 3, self.stride, "conv2"), train, "bn2", y))
      y = conv_bn(conv(out_features, 1, 1, "conv3"), train, "bn3", y)
    if self.stride != 1 or x.shape[-1] != out_features:
      x = conv_bn(conv(out_features, 1, self.stride, "proj"), train, "proj_bn", x)
    return nn.relu(x + y)


class TorchResNet(nn.Module):
  """torchvision's ResNet-`depth` (18, 34, 50, 101, 152); `widths` are its stages'
  planes (torchvision: 64, 128, 256, 512) and `units` its units per stage (empty:
  torchvision's for that depth); other values make small test fixtures."""
  num_classes: int
  depth: int = 18
  widths: Sequence[int] = (64, 128, 256, 512)
  units: Sequence[int] = ()
  image_size: int = 224     # inputs resized to image_size x image_size (0: as they come)
  normalize: bool = True    # ImageNet mean and std, as torchvision's weights expect
  conv: str = "auto"        # how convolutions are computed: auto | xla | im2col (layers.py)

  def block_names(self):
    return ("block1", "block2", "block3", "block4", "head")

  def head_input(self, x):
    """The last block's map as the head sees it: averaged over space."""
    return jnp.mean(x, axis=(1, 2))

  def prepare(self, x):
    """[0, 1] images as the weights expect them: 3 channels, resized, normalised."""
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    if x.shape[-1] != 3:
      raise ConfigError(f"{type(self).__name__} takes 1 or 3 channels, not {x.shape[-1]}.")
    size = self.image_size
    if size and x.shape[1:3] != (size, size):
      x = jax.image.resize(x, (x.shape[0], size, size, 3), "bilinear")
    if self.normalize:
      x = (x - jnp.asarray(IMAGENET_MEAN, x.dtype)) / jnp.asarray(IMAGENET_STD, x.dtype)
    return x

  @nn.compact
  def __call__(self, x, train: bool = True, start: int = 0, stop: int | None = None):
    """Blocks `block_names()[start:stop]` on `x` (the input of block `start`)."""
    if self.depth not in DEPTHS:
      raise ConfigError(f"Unknown ResNet depth {self.depth}; valid: {sorted(DEPTHS)}.")
    kind, units = DEPTHS[self.depth]
    units = tuple(self.units) or units
    if len(self.widths) != 4 or len(units) != 4:
      raise ConfigError(f"TorchResNet has 4 stages; widths={tuple(self.widths)}, "
                        f"units={units}.")
    for i in range(5)[start:stop]:
      if i == 4:
        x = nn.Dense(self.num_classes, name="head")(self.head_input(x))
      else:
        x = Stage(kind, self.widths[i], units[i], 1 if i == 0 else 2, stem=(i == 0),
                  conv=self.conv, name=f"block{i + 1}")(self.prepare(x) if i == 0 else x, train)
    return x


class Stage(nn.Module):
  kind: str
  planes: int
  num_units: int
  stride: int
  stem: bool = False
  conv: str = "xla"

  @nn.compact
  def __call__(self, x, train: bool):
    if self.stem:
      x = conv_bn(_conv(self.planes, 7, 2, "stem_conv", self.conv), train, "stem_bn", x)
      x = nn.max_pool(nn.relu(x), (3, 3), (2, 2),
                      padding=((1, 1), (1, 1)))
    for u in range(self.num_units):
      x = Unit(self.kind, self.planes, self.stride if u == 0 else 1, self.conv,
               name=f"unit{u + 1}")(x, train)
    return x


# torch name -> (collection, jaxtl path, how the array turns)
_BN = {"weight": ("params", "scale"), "bias": ("params", "bias"),
       "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


def _place(name: str):
  """(collection, path, kind) of torch tensor `name`, None for bookkeeping
  (num_batches_tracked), or raises KeyError when it has no place."""
  if name.endswith("num_batches_tracked"):
    return None
  if name in ("fc.weight", "fc.bias"):
    return "params", ("head", "kernel" if name.endswith("weight") else "bias"), "linear"
  stem = re.fullmatch(r"(conv1|bn1)\.(\w+)", name)
  unit = re.fullmatch(r"layer([1-4])\.(\d+)\.(conv[1-3]|bn[1-3]|downsample\.[01])\.(\w+)", name)
  if stem:
    module, leaf = ("stem_conv" if stem[1] == "conv1" else "stem_bn"), stem[2]
    prefix = ("block1",)
  elif unit:
    module = {"downsample.0": "proj", "downsample.1": "proj_bn"}.get(unit[3], unit[3])
    prefix, leaf = (f"block{unit[1]}", f"unit{int(unit[2]) + 1}"), unit[4]
  else:
    raise KeyError(name)
  if "conv" in module or module == "proj":
    if leaf != "weight":
      raise KeyError(name)
    return "params", (*prefix, module, "kernel"), "conv"
  if leaf not in _BN:
    raise KeyError(name)
  collection, flax_leaf = _BN[leaf]
  return collection, (*prefix, module, flax_leaf), "copy"


def variables_from_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict:
  """`{"params": ..., "batch_stats": ...}` of `TorchResNet` from a torchvision / timm
  ResNet state dict. Raises ConfigError naming, one per line, every tensor that a
  torchvision ResNet does not have (another architecture, a timm variant with a deep
  stem, a wrapped checkpoint)."""
  variables, unexpected = {"params": {}, "batch_stats": {}}, []
  for name, array in state_dict.items():
    try:
      placed = _place(name)
    except KeyError:
      unexpected.append(f"{name}: shape {tuple(np.shape(array))}")
      continue
    if placed is None:
      continue
    collection, path, kind = placed
    array = np.asarray(array)
    if kind == "conv":
      if array.ndim != 4:
        unexpected.append(f"{name}: shape {array.shape}, not a conv weight (O, I, H, W)")
        continue
      array = array.transpose(2, 3, 1, 0)
    elif kind == "linear" and array.ndim == 2:
      array = array.T
    node = variables[collection]
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = array
  if unexpected:
    raise ConfigError(
        f"Not a torchvision ResNet state dict: {len(unexpected)} tensors have no place in "
        "TorchResNet (conv1, bn1, layer1-4 of BasicBlock/Bottleneck units, fc):\n  "
        + "\n  ".join(unexpected[:20])
        + (f"\n  ... and {len(unexpected) - 20} more" if len(unexpected) > 20 else ""))
  if not variables["params"]:
    raise ConfigError("The state dict holds no tensors.")
  return variables


def describe_state_dict(state_dict: Mapping[str, np.ndarray]) -> str:
  """The ResNet a torchvision state dict holds, in the model's terms, e.g.
  "torchvision_resnet50 (Bottleneck units (3, 4, 6, 3), widths (64, 128, 256, 512), 1000
  classes)": what to set when the model and the file disagree."""
  shape = lambda name: tuple(np.shape(state_dict[name])) if name in state_dict else None
  if shape("layer1.0.conv1.weight") is None:
    return "no torchvision ResNet (it has no layer1.0.conv1.weight)"
  kind = "bottleneck" if shape("layer1.0.conv3.weight") else "basic"
  conv1, conv2 = shape("layer1.0.conv1.weight"), shape("layer1.0.conv2.weight") or ()
  if len(conv2) == 4 and conv2[1] != conv1[0]:
    return "a ResNeXt (grouped 3x3 convolutions), which TorchResNet does not build"
  if kind == "bottleneck" and shape("layer1.0.conv3.weight")[0] != 4 * conv1[0]:
    return "a Wide ResNet (wider bottlenecks), which TorchResNet does not build"
  units = tuple(len({k.split(".")[1] for k in state_dict if k.startswith(f"layer{i}.")})
                for i in range(1, 5))
  widths = tuple(int((shape(f"layer{i}.0.conv1.weight") or (0,))[0]) for i in range(1, 5))
  depth = [d for d, (k, u) in DEPTHS.items() if k == kind and tuple(u) == units]
  name = f"torchvision_resnet{depth[0]}" if depth else "a ResNet"
  classes = shape("fc.weight")
  return (f"{name} ({'Bottleneck' if kind == 'bottleneck' else 'BasicBlock'} units "
          f"{units}, widths {widths}" + (f", {classes[0]} classes)" if classes else ")"))
