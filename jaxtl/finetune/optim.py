"""The one optimiser factory of fine-tuning: the trainer, the grid and the multi-task
trainer all build their optimiser here, so every config field means the same on every path.

What each field means (stated once, as PyTorch's optimisers, which the papers' code uses):

| optimizer | update                                                                     |
|-----------|----------------------------------------------------------------------------|
| `adam`    | Adam on g + weight_decay * w (L2 added to the gradient: torch `Adam`)      |
| `adamw`   | Adam on g, then - lr * weight_decay * w (decoupled: torch `AdamW`)         |
| `sgd`     | momentum SGD on g + weight_decay * w (torch `SGD`; `momentum` 0: plain SGD) |

`learning_rate` and `weight_decay` may be traced (the grid vmaps over them). A per-leaf
learning-rate scale (`scales`: a tree of floats like the trainable leaves) multiplies the
final update, which equals scaling the learning rate of that leaf for all three. Auto-RGN
and Auto-SNR (`jaxtl.finetune.auto`) wrap the result.
"""
import jax
import optax

from jaxtl.errors import ConfigError
from jaxtl.finetune import auto

OPTIMIZERS = ("adam", "adamw", "sgd")


def _scale_leaves(scales) -> optax.GradientTransformation:
  return optax.GradientTransformation(
      lambda _: optax.EmptyState(),
      lambda u, s, p=None: (jax.tree_util.tree_map(lambda a, c: a * c, u, scales), s))


def make(name: str, learning_rate, weight_decay=0.0, momentum: float = 0.0,
         scales=None) -> optax.GradientTransformation:
  """The optimiser `name` (see the module docstring) with per-leaf `scales` (None: 1)."""
  if name not in OPTIMIZERS:
    raise ConfigError(f"Unknown optimizer {name!r}; valid: {OPTIMIZERS}.")
  if name == "adam":
    parts = [optax.add_decayed_weights(weight_decay), optax.scale_by_adam()]
  elif name == "adamw":
    parts = [optax.scale_by_adam(), optax.add_decayed_weights(weight_decay)]
  else:
    parts = [optax.add_decayed_weights(weight_decay)]
    if momentum:
      parts.append(optax.trace(decay=momentum))
  parts.append(optax.scale_by_learning_rate(learning_rate))
  if scales is not None:
    parts.append(_scale_leaves(scales))
  return optax.chain(*parts)


def from_config(config, scales, steps_per_epoch: int, learning_rate=None,
                weight_decay=None) -> optax.GradientTransformation:
  """`make` from a fine-tuning config (optimizer, learning_rate, weight_decay, momentum),
  wrapped in Auto-RGN / Auto-SNR for those strategies (re-measured every `auto_period`
  steps, or every epoch). `learning_rate` / `weight_decay` override the config's (traced
  values in the grid)."""
  lr = config.learning_rate if learning_rate is None else learning_rate
  wd = config.weight_decay if weight_decay is None else weight_decay
  tx = make(config.optimizer, lr, wd, config.momentum if config.optimizer == "sgd" else 0.0,
            scales)
  return auto.wrap(tx, config.strategy, config.auto_period or steps_per_epoch,
                   config.auto_measure_steps, config.snr_threshold)
