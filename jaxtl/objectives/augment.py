"""Image augmentations that run on the device inside a jitted step: each image of a batch
gets its own random affine warp (rotation, scale = crop/resize, translation) and pixel
noise, drawn from a key, so a step's augmentations are reproducible from its key."""
import jax
import jax.numpy as jnp
from jax.scipy import ndimage


def random_affine(key, images, max_rotate_deg: float = 15.0, scale=(0.9, 1.3),
                  max_translate: float = 0.1):
  """(B, H, W, C) images, each rotated by up to +-`max_rotate_deg`, zoomed by a factor in
  `scale` (> 1 crops into the image and resizes it back up) and shifted by up to
  `max_translate` of its size, about its centre; bilinear, edge pixels repeated."""
  b, h, w, c = images.shape
  k_angle, k_scale, k_shift = jax.random.split(key, 3)
  angle = jnp.deg2rad(max_rotate_deg) * jax.random.uniform(k_angle, (b,), minval=-1, maxval=1)
  zoom = jax.random.uniform(k_scale, (b,), minval=scale[0], maxval=scale[1])
  shift = max_translate * jnp.array([h, w]) * jax.random.uniform(k_shift, (b, 2), minval=-1,
                                                                  maxval=1)
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                            indexing="ij")
  centre_r, centre_c = (h - 1) / 2, (w - 1) / 2

  def warp(image, angle, zoom, shift):
    # The source pixel of each output pixel: the inverse of rotate-zoom-shift.
    r, q = rows - centre_r - shift[0], cols - centre_c - shift[1]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    src_r = (cos * r + sin * q) / zoom + centre_r
    src_c = (-sin * r + cos * q) / zoom + centre_c
    channel = lambda i: ndimage.map_coordinates(image[..., i], [src_r, src_c], order=1,
                                                mode="nearest")
    return jnp.stack([channel(i) for i in range(c)], axis=-1)

  return jax.vmap(warp)(images, angle, zoom, shift)


def augment(key, images, max_rotate_deg: float = 15.0, scale=(0.9, 1.3),
            max_translate: float = 0.1, pixel_noise: float = 0.05):
  """`random_affine`, then Gaussian pixel noise of standard deviation `pixel_noise`."""
  k_affine, k_noise = jax.random.split(key)
  warped = random_affine(k_affine, images, max_rotate_deg, tuple(scale), max_translate)
  return warped + pixel_noise * jax.random.normal(k_noise, warped.shape, warped.dtype)


OPTIONS = ("max_rotate_deg", "scale", "max_translate", "pixel_noise")


def from_options(key, images, options):
  """`augment` with the arguments named in OPTIONS taken from `options`."""
  return augment(key, images, **{k: options[k] for k in OPTIONS})

