"""Masked-image modelling and denoising: hide random square patches of each image (and/or
add noise) and reconstruct the clean pixels. The decoder is light, the network's head:
one linear map from its features to the H x W x C pixels."""
import math

import jax
import jax.numpy as jnp

from jaxtl.errors import ConfigError
from jaxtl.objectives.base import Objective


def patch_mask(key, shape, patch: int, ratio: float):
  """(B, H, W, 1) of 0/1: each `patch` x `patch` square of each image hidden (1) with
  probability `ratio`."""
  b, h, w = shape[:3]
  grid = jax.random.bernoulli(key, ratio, (b, math.ceil(h / patch), math.ceil(w / patch)))
  mask = jnp.repeat(jnp.repeat(grid, patch, axis=1), patch, axis=2)[:, :h, :w]
  return mask[..., None].astype(jnp.float32)


def reconstruction_loss(outputs, images, mask, masked_only: bool):
  """Mean squared error of the reconstruction, over the hidden pixels only if
  `masked_only` (each image channel counted), else over every pixel."""
  error = jnp.square(outputs.reshape(images.shape) - images)
  if not masked_only:
    return jnp.mean(error)
  weight = jnp.broadcast_to(mask, images.shape)
  return jnp.sum(error * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def objective(num_classes: int, input_shape, options) -> Objective:
  """Options' `mask_ratio` of `patch` x `patch` squares hidden, `noise_std` added,
  the loss on the hidden pixels only if `masked_only`."""
  del num_classes
  mask_ratio, patch, noise_std = options["mask_ratio"], options["patch"], options["noise_std"]
  masked_only = options["masked_only"]
  if not 0 <= mask_ratio < 1:
    raise ConfigError(f"mae mask_ratio={mask_ratio} must be in [0, 1).")
  if masked_only and mask_ratio == 0:
    raise ConfigError("mae masked_only=True with mask_ratio=0 leaves no pixel to score; set "
                      "masked_only=False for a denoising autoencoder.")
  if mask_ratio == 0 and noise_std == 0:
    raise ConfigError("mae with mask_ratio=0 and noise_std=0 is the identity; hide patches "
                      "or add noise.")

  def prepare(key, images, labels):
    k_mask, k_noise = jax.random.split(key)
    mask = patch_mask(k_mask, images.shape, patch, mask_ratio)
    inputs = images * (1 - mask)
    if noise_std:
      inputs = inputs + noise_std * jax.random.normal(k_noise, images.shape, images.dtype)
    return inputs, (images, mask)

  def loss(outputs, targets):
    return reconstruction_loss(outputs, *targets, masked_only)

  return Objective("mae", math.prod(input_shape), prepare, loss,
                   lambda outputs, targets: {"mse": loss(outputs, targets)})
