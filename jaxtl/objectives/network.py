"""The network an objective with a head of its own trains (`Objective.head`): the model's
blocks, then the objective's head in place of the model's (SimCLR's projection MLP, the
masked autoencoder's decoder and mask token).

The model's parameters keep their paths (`block1`, ...: the two share one scope) and the
objective's live under `head/`, so the checkpoint loads with `init_from` as a supervised
one does, and fine-tuning's `reinit=("^head/",)` drops what only the objective needed, as
SimCLR drops its projection head after pre-training and MAE its decoder.
"""
import flax.linen as nn

from jaxtl.errors import ConfigError
from jaxtl.models import block_names


class ObjectiveNet(nn.Module):
  """`model`'s blocks up to its head, then `head`: on the pooled features the model's own
  head would see if `head.pooled`, else on the last block's map. A head with an
  `embed(x)` method turns the objective's inputs into the model's first (MAE: puts its
  mask token in the hidden patches)."""
  model: nn.Module
  head: nn.Module

  def setup(self):
    if not hasattr(self.model, "head_input"):
      raise ConfigError(f"An objective with its own head needs a model that exposes its "
                        f"features (head_input): conv4, resnet or a torchvision ResNet, "
                        f"not {type(self.model).__name__}.")
    nn.share_scope(self, self.model)

  def block_names(self):
    return block_names(self.model)

  def __call__(self, x, train: bool = True, start: int = 0, stop: int | None = None):
    """Blocks `block_names()[start:stop]`, as the models' own `start` / `stop`."""
    last = len(self.block_names()) - 1  # the head's index
    stop = last + 1 if stop is None else stop
    if start == 0 and hasattr(self.head, "embed"):
      x = self.head.embed(x)
    if start < last:
      x = self.model(x, train, start=start, stop=min(stop, last))
    if stop <= last:
      return x
    return self.head(self.model.head_input(x) if self.head.pooled else x)
