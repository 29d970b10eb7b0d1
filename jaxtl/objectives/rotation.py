"""Rotation prediction (Gidaris et al. 2018): each image is shown at 0, 90, 180 and 270
degrees, all four in the batch as the paper does, and a 4-way head names the rotation."""
import jax.numpy as jnp

from jaxtl.errors import ConfigError
from jaxtl.objectives.base import Objective, classification_metrics, cross_entropy
from jaxtl.objectives import augment as augmentations

ROTATIONS = 4


def rotate_all(images):
  """(B, H, W, C) -> (4B, H, W, C) and labels (4B,): copy k of every image turned by k
  quarter-turns counter-clockwise, label k."""
  rotated = jnp.concatenate([jnp.rot90(images, k, axes=(1, 2)) for k in range(ROTATIONS)])
  labels = jnp.repeat(jnp.arange(ROTATIONS), images.shape[0])
  return rotated, labels


def objective(num_classes: int, input_shape, options) -> Objective:
  """The images, augmented first if `options["augment"]`, at the 4 rotations."""
  del num_classes
  if input_shape[0] != input_shape[1]:
    raise ConfigError(f"The rotation objective needs square images; got {input_shape[:2]}.")

  def prepare(key, images, labels):
    if options["augment"]:
      images = augmentations.from_options(key, images, options)
    return rotate_all(images)
  def metrics(logits, labels):  # named apart from a classifier's test_accuracy
    scores = classification_metrics(logits, labels)
    return {"loss": scores["loss"], "rotation_accuracy": scores["accuracy"]}
  return Objective("rotation", ROTATIONS, prepare, cross_entropy, metrics)
