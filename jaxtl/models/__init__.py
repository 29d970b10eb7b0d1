"""Pure Flax models with named blocks (`block1`, ..., `head`) and a registry by name."""
from jaxtl.errors import ConfigError
from jaxtl.models.conv4 import Conv4
from jaxtl.models.mlp import MLP
from jaxtl.models.resnet import ResNet

MODELS = {"conv4": Conv4, "resnet": ResNet, "mlp": MLP}


def build_model(name: str, **kwargs):
  """Returns the model `name` (one of MODELS) built with `kwargs`."""
  if name not in MODELS:
    raise ConfigError(f"Unknown model {name!r}; valid models: {sorted(MODELS)}.")
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
