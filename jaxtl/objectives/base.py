"""What every objective is made of: the `Objective` tuple, cross-entropy, the options every
objective reads (`OPTIONS`, the config's `objective_kwargs`) and `supervised`."""
from typing import Callable, NamedTuple, Optional

import jax.numpy as jnp
import optax

from jaxtl.objectives import augment as augmentations


class Objective(NamedTuple):
  name: str
  num_outputs: int  # the size of the network's head
  prepare: Callable  # (key, images, labels) -> (inputs, targets), on the device
  loss: Callable     # (outputs, targets) -> scalar
  metrics: Callable  # (outputs, targets) -> {name: scalar}, for evaluation
  # () -> a Flax module that replaces the model's head (`objectives.network`); None: the
  # model's own head, with num_outputs outputs, is the objective's output layer.
  head: Optional[Callable] = None


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def classification_metrics(logits, labels):
  return {"loss": cross_entropy(logits, labels),
          "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}


# Every objective's options, with their defaults: the config's `objective_kwargs` (so each
# can be set from the command line); an objective reads the ones it uses.
OPTIONS = {
    "augment": False,  # supervised, rotation: augment the images first (simclr always does)
    "max_rotate_deg": 15.0, "scale": (0.9, 1.3), "max_translate": 0.1,  # augmentations
    "pixel_noise": 0.05,
    # simclr: NT-Xent's temperature, the projection MLP, its views' crop area fraction
    # (low, high) and grey-level jitter strength (augment.simclr_view)
    "temperature": 0.5, "projection_dim": 64, "projection_hidden": 256,
    "crop_scale": (0.2, 1.0), "jitter": 0.5,
    # mae, masked_denoise: the share of patch x patch squares hidden; mae's decoder
    # width; masked_denoise's noise and whether it scores the hidden pixels only
    "mask_ratio": 0.75, "patch": 4, "decoder_width": 32, "noise_std": 0.0,
    "masked_only": True,
}


def supervised(num_classes: int, input_shape, options) -> Objective:
  """Cross-entropy on the labels, on augmented images if `options["augment"]`."""
  del input_shape

  def prepare(key, images, labels):
    if options["augment"]:
      images = augmentations.from_options(key, images, options)
    return images, labels
  return Objective("supervised", num_classes, prepare, cross_entropy, classification_metrics)
