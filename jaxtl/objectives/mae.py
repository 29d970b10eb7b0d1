"""Masked-image modelling: hide random square patches of each image and reconstruct them.

  mae:            a masked autoencoder (He et al. 2022) at convnet scale. The encoder sees
                  a learned mask token in the hidden patches (so hidden is not blank: ink
                  is 1 and background 0 in these datasets); a decoder with depth, from
                  the last block's spatial map (a dense layer to a quarter-resolution map,
                  then two stride-2 transposed convolutions), reconstructs the pixels; the
                  loss is on the hidden patches. Token and decoder live under `head/`, so
                  fine-tuning drops them (`objectives.network`).
  masked_denoise: the simpler objective this project first called mae: hidden pixels set
                  to 0, optional noise, one linear map from the pooled features (the
                  network's own head) to the pixels.
"""
import math

import flax.linen as nn
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


class MaskedDecoder(nn.Module):
  """The masked autoencoder's parts outside the encoder: `embed` puts the mask token in
  the hidden patches of the inputs (images with the mask as one more channel; plain images
  pass through), `__call__` decodes the encoder's last map to H x W x C pixels."""
  image_shape: tuple  # (H, W, C)
  patch: int
  width: int
  pooled = False  # from the spatial map

  def setup(self):
    h, w, c = self.image_shape
    # Mid-grey at first, neither background (0) nor ink (1); learned.
    self.mask_token = self.param("mask_token", nn.initializers.constant(0.5),
                                 (self.patch, self.patch, c))
    self.quarter = (math.ceil(h / 4), math.ceil(w / 4))
    self.dense = nn.Dense(self.quarter[0] * self.quarter[1] * self.width)
    self.up1 = nn.ConvTranspose(self.width, (3, 3), (2, 2))
    self.up2 = nn.ConvTranspose(c, (3, 3), (2, 2))

  def embed(self, x):
    h, w, c = self.image_shape
    if x.shape[-1] == c:  # no mask (initialisation, features for transfer)
      return x
    images, mask = x[..., :c], x[..., c:]
    reps = (math.ceil(h / self.patch), math.ceil(w / self.patch), 1)
    token = jnp.tile(self.mask_token, reps)[:h, :w].astype(images.dtype)
    return images * (1 - mask) + mask * token

  def __call__(self, features):
    b = features.shape[0]
    z = nn.relu(self.dense(features.reshape(b, -1)))
    z = nn.relu(self.up1(z.reshape(b, *self.quarter, self.width)))
    h, w, _ = self.image_shape
    return self.up2(z)[:, :h, :w]


def objective(num_classes: int, input_shape, options) -> Objective:
  """Options' `mask_ratio` of `patch` x `patch` squares hidden behind the mask token,
  `decoder_width` channels in the decoder; the loss on the hidden pixels."""
  del num_classes
  mask_ratio, patch = options["mask_ratio"], options["patch"]
  if not 0 < mask_ratio < 1:
    raise ConfigError(f"mae mask_ratio={mask_ratio} must be in (0, 1).")

  def prepare(key, images, labels):
    del labels
    mask = patch_mask(key, images.shape, patch, mask_ratio)
    return jnp.concatenate([images, mask.astype(images.dtype)], -1), (images, mask)

  def loss(outputs, targets):
    return reconstruction_loss(outputs, *targets, masked_only=True)

  head = lambda: MaskedDecoder(tuple(input_shape), patch, options["decoder_width"])
  return Objective("mae", math.prod(input_shape), prepare, loss,
                   lambda outputs, targets: {"mse": loss(outputs, targets)}, head)


def masked_denoise(num_classes: int, input_shape, options) -> Objective:
  """Options' `mask_ratio` of `patch` x `patch` squares set to 0, `noise_std` added,
  the loss on the hidden pixels only if `masked_only`."""
  del num_classes
  mask_ratio, patch, noise_std = options["mask_ratio"], options["patch"], options["noise_std"]
  masked_only = options["masked_only"]
  if not 0 <= mask_ratio < 1:
    raise ConfigError(f"masked_denoise mask_ratio={mask_ratio} must be in [0, 1).")
  if masked_only and mask_ratio == 0:
    raise ConfigError("masked_denoise masked_only=True with mask_ratio=0 leaves no pixel to "
                      "score; set masked_only=False for a denoising autoencoder.")
  if mask_ratio == 0 and noise_std == 0:
    raise ConfigError("masked_denoise with mask_ratio=0 and noise_std=0 is the identity; "
                      "hide patches or add noise.")

  def prepare(key, images, labels):
    del labels
    k_mask, k_noise = jax.random.split(key)
    mask = patch_mask(k_mask, images.shape, patch, mask_ratio)
    inputs = images * (1 - mask)
    if noise_std:
      inputs = inputs + noise_std * jax.random.normal(k_noise, images.shape, images.dtype)
    return inputs, (images, mask)

  def loss(outputs, targets):
    return reconstruction_loss(outputs, *targets, masked_only)

  return Objective("masked_denoise", math.prod(input_shape), prepare, loss,
                   lambda outputs, targets: {"mse": loss(outputs, targets)})
