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



def random_resized_crop(key, images, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)):
  """SimCLR's crop (Chen et al. 2020, as torchvision's RandomResizedCrop): per image, a
  box of `scale` of its area (uniform) and aspect ratio in `ratio` (log-uniform), at a
  uniform position, resized back to H x W; bilinear, edge pixels repeated."""
  b, h, w, c = images.shape
  k_area, k_ratio, k_pos = jax.random.split(key, 3)
  area = jax.random.uniform(k_area, (b,), minval=scale[0], maxval=scale[1])
  aspect = jnp.exp(jax.random.uniform(k_ratio, (b,), minval=jnp.log(ratio[0]),
                                      maxval=jnp.log(ratio[1])))
  # Box sides as fractions of the image's, clipped to fit (torchvision retries instead).
  box_h = jnp.clip(jnp.sqrt(area / aspect), 0, 1)
  box_w = jnp.clip(jnp.sqrt(area * aspect), 0, 1)
  top_left = jax.random.uniform(k_pos, (b, 2)) * jnp.stack([1 - box_h, 1 - box_w], -1)
  rows, cols = jnp.meshgrid((jnp.arange(h) + 0.5) / h, (jnp.arange(w) + 0.5) / w,
                            indexing="ij")

  def crop(image, box_h, box_w, top_left):
    src_r = (top_left[0] + rows * box_h) * h - 0.5
    src_c = (top_left[1] + cols * box_w) * w - 0.5
    channel = lambda i: ndimage.map_coordinates(image[..., i], [src_r, src_c], order=1,
                                                mode="nearest")
    return jnp.stack([channel(i) for i in range(c)], axis=-1)

  return jax.vmap(crop)(images, box_h, box_w, top_left)


def grey_jitter(key, images, strength: float, probability: float = 0.8):
  """SimCLR's colour distortion where there is no colour: with `probability`, brightness
  and contrast each scaled by a factor uniform in 1 +- 0.8 `strength` (its ColorJitter's
  brightness and contrast at strength s; hue and saturation do not exist in grey)."""
  b = images.shape[0]
  k_apply, k_bright, k_contrast = jax.random.split(key, 3)
  spread = 0.8 * strength
  factor = lambda k: jax.random.uniform(k, (b, 1, 1, 1), minval=1 - spread, maxval=1 + spread)
  mean = images.mean(axis=(1, 2, 3), keepdims=True)
  jittered = factor(k_bright) * ((images - mean) * factor(k_contrast) + mean)
  apply = jax.random.bernoulli(k_apply, probability, (b, 1, 1, 1))
  return jnp.where(apply, jittered, images)


def simclr_view(key, images, crop_scale=(0.2, 1.0), jitter: float = 0.5):
  """One SimCLR view: `random_resized_crop` then `grey_jitter` (Chen et al. 2020 found
  crop plus colour distortion the essential pair). No horizontal flip: a mirrored
  character or digit is another symbol; no blur, as the paper's CIFAR-10 recipe at small
  resolution."""
  k_crop, k_jitter = jax.random.split(key)
  return grey_jitter(k_jitter, random_resized_crop(k_crop, images, tuple(crop_scale)), jitter)
