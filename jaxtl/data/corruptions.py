"""MNIST-C's 15 corruptions (Mu & Gilmer 2019) and jaxtl's older ones, in numpy and scipy.

`corrupt(images, name, seed)` applies one corruption to a batch of float images (N, H, W, C)
in [0, 1], ink bright on a dark background. MNIST-C fixes one severity per corruption (the
function defaults of github.com/google-research/mnist-c `corruptions.py`, which made the
published dataset), so there is no severity here. Random parameters are drawn per image, as
MNIST-C draws them per image; a seed fixes them all.

  shot_noise      Poisson(3 x) / 3 per pixel.
  impulse_noise   salt and pepper: 17% of pixels set to 0 or 1, half each.
  glass_blur      Gaussian blur (sigma 0.7) down the columns only, then two passes from the
                  bottom right swapping each pixel, with probability 1/2, with the one 0 or 1
                  row up and 0 or 1 column left, then the same blur. (MNIST-C calls skimage's
                  gaussian with multichannel=True on a 2-D image, which leaves the last axis
                  unblurred; kept.)
  motion_blur     ImageMagick's one-sided motion blur: radius 10 (21 taps), sigma 3, angle
                  uniform in [-45, 45] degrees; edge pixels repeat.
  shear           affine shear of +-0.4 (random sign) about the image centre, bilinear.
  scale           the image shrunk to 0.7 of its size about the centre, bilinear.
  rotate          +-0.4 rad (23 degrees; MNIST-C draws only the sign) about the centre.
  brightness      HSV value + 0.5 (a grey image becomes min(x + 0.5, 1)).
  translate       3 pixels along each axis, each sign random, zero fill.
  stripe          the left and right quarters (7 of 28 columns each) inverted.
  fog             a plasma fractal (diamond-square, 256x256, decay 1.4; its top-left 28x28)
                  times 3 added, then rescaled by max / (max + 3).
  spatter         mud: Normal(0.65, 0.3) noise, blurred (sigma 1), thresholded at 0.65,
                  blurred (sigma 1.5), kept where >= 0.8, mixed in as grey 63/255.
  dotted_line     MNIST-C's antialiased line across the image (random rows at both ends),
                  dashed 2 on / 2 off, added.
  zigzag          a zigzag (teeth 2 pixels long and high) along a random slightly tilted line
                  from column 2 to 25, added.
  canny_edges     the image replaced by its Canny edges (sigma 1, thresholds 0.1 / 0.2).

Deviations from MNIST-C, which used skimage (< 0.19), ImageMagick (wand), OpenCV and PIL:
  * Random draws come from numpy's Generator, so no random corruption reproduces MNIST-C's
    images pixel for pixel, only their law. The warps and canny_edges equal skimage's
    (checked against skimage 0.26 to 1e-15, and no differing edge pixel).
  * motion_blur is ImageMagick's MotionBlurImage reimplemented (no wand here), not checked
    against ImageMagick itself.
  * Everything stays float: MNIST-C rounds to 8 bits in places (glass_blur between its
    steps, motion_blur through a PNG, and the saved dataset).
  * Images other than 28x28 (scikit-learn's 8x8 digits): sizes in pixels scale with
    min(H, W) / 28. Integer ones (shifts, swap distance, stripe width, dash length) are
    rounded, at least 1 pixel; lines are at least 1.5 pixels wide so that an 8x8 line has
    no gaps; fog and spatter are made at 28x28 and resized bilinearly.
  * Several channels: noise per channel, one geometry per image; brightness keeps hue.

The legacy corruptions are jaxtl's earlier ones at their old severity 5: `gaussian_noise`
(sigma 0.38, the same draws as before for a seed), `blur`, `contrast`, `inversion`. MNIST-C's
`impulse_noise` and `fog` replace the older ones of those names.

`register_corruption` adds a user's corruption without editing jaxtl.
"""
import math
from typing import Callable, Dict

import numpy as np
from scipy import ndimage

from jaxtl.data import image_ops as ops
from jaxtl.errors import ConfigError

CorruptionFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]

MNIST_C = ("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale",
           "rotate", "brightness", "translate", "stripe", "fog", "spatter", "dotted_line",
           "zigzag", "canny_edges")
LEGACY = ("gaussian_noise", "blur", "contrast", "inversion")
# MNIST-C's warps of the whole image: they move the digit rather than change its pixels'
# statistics, and CIFAR-10-C and ImageNet-C (Lee et al.'s input-level shifts) have none.
AFFINE = ("shear", "scale", "rotate", "translate")

# name -> function, in registration order (dicts keep it): the built-ins, then users'.
_REGISTRY: Dict[str, CorruptionFn] = {}


def register_corruption(name: str, fn: CorruptionFn, *, overwrite: bool = False) -> None:
  """Makes `corrupt(images, name, seed)` call `fn(images, rng)`.

  Args:
    name: a non-empty identifier ("ink_blot"), so that it reads well in a config.
    fn: takes float images (N, H, W, C) in [0, 1] and a numpy Generator, returns an array
      of the same shape and a float dtype; `corrupt` clips it to [0, 1].
    overwrite: replace a corruption of the same name (it keeps its place in the order).

  Example:
    register_corruption("ink_blot", lambda x, rng: np.maximum(x, rng.random(x.shape) > 0.99))
  """
  if not isinstance(name, str) or not name.isidentifier():
    raise ConfigError(f"Corruption name {name!r} is not valid: use a non-empty identifier "
                      f"such as 'ink_blot'.")
  if not callable(fn):
    raise ConfigError(f"Corruption {name!r}: {fn!r} is not callable; register a function "
                      f"(images, rng) -> images.")
  if name in _REGISTRY and not overwrite:
    raise ConfigError(f"Corruption {name!r} is already registered; pass overwrite=True to "
                      f"replace it. Registered corruptions: {corruption_names()}.")
  _REGISTRY[name] = fn


def corruption_names() -> tuple:
  """Every registered corruption, in registration order (MNIST_C, LEGACY, then users')."""
  return tuple(_REGISTRY)


def corrupt(images: np.ndarray, corruption: str, seed: int) -> np.ndarray:
  """Corrupted copy of float images (N, H, W, C) in [0, 1]; deterministic for a seed.

  Args:
    images: float array, ink near 1 on a background near 0; not modified.
    corruption: a name of `corruption_names()`.
    seed: seeds `np.random.default_rng`, the corruption's only randomness.

  Returns:
    float32 array of the same shape, clipped to [0, 1].

  Example:
    target = corrupt(test.images, "glass_blur", seed=1)
  """
  if corruption not in _REGISTRY:
    raise ConfigError(f"Unknown corruption {corruption!r}; valid corruptions: "
                      f"{corruption_names()}.")
  images = np.asarray(images)
  if images.ndim != 4 or not np.issubdtype(images.dtype, np.floating):
    raise ConfigError(f"corrupt({corruption!r}) takes float images (N, H, W, C) in [0, 1]; "
                      f"got {images.dtype} of shape {images.shape}.")
  if not len(images):
    return images.astype(np.float32)
  rng = np.random.default_rng(seed)
  out = _REGISTRY[corruption](images.copy(), rng)  # a copy: fns may work in place
  if (not isinstance(out, np.ndarray) or out.shape != images.shape or
      not np.issubdtype(out.dtype, np.floating)):
    got = (f"{out.dtype} of shape {out.shape}" if isinstance(out, np.ndarray)
           else type(out).__name__)
    raise ConfigError(f"Corruption {corruption!r} returned {got}; it must return a float "
                      f"array of the input's shape {images.shape}.")
  return np.clip(out, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------- MNIST-C

def shot_noise(images, rng):
  return rng.poisson(images * 3.0) / 3.0


def impulse_noise(images, rng):
  hit = rng.random(images.shape) < 0.17
  salt = rng.random(images.shape) < 0.5
  return np.where(hit, salt.astype(images.dtype), images)


def glass_blur(images, rng):
  n, h, w, c = images.shape
  sigma, reach = 0.7 * ops.size_factor(images), ops.pixels(1, images)
  # Vertical only, as MNIST-C's skimage call blurs (module docstring).
  blur = lambda x: ndimage.gaussian_filter1d(x, sigma, axis=1, mode="nearest")
  flat = blur(images.astype(np.float64)).reshape(n, h * w, c)
  every = np.arange(n)
  # MNIST-C's pixel loop, run for all images at once: the swaps are sequential, a pixel can
  # travel further than `reach`. numpy's randint(-reach, reach) excludes +reach, so
  # pixels are swapped with ones up and to the left only.
  for _ in range(2):
    for row in range(h - reach, reach, -1):
      for col in range(w - reach, reach, -1):
        here = row * w + col
        moves = rng.random(n) < 0.5
        d_row, d_col = rng.integers(-reach, reach, size=(2, n))
        there = np.where(moves, (row + d_row) * w + col + d_col, here)
        kept = flat[:, here].copy()
        flat[:, here] = flat[every, there]
        flat[every, there] = kept
  return blur(flat.reshape(n, h, w, c))


def motion_blur(images, rng):
  # ImageMagick's MotionBlurImage, which MNIST-C calls through wand: one-sided Gaussian
  # taps along the angle, each offset rounded to a whole pixel.
  n, h, w, _ = images.shape
  radius, sigma = 10 * ops.size_factor(images), 3 * ops.size_factor(images)
  taps = np.arange(2 * math.ceil(radius) + 1)  # ImageMagick's kernel width for a radius
  kernel = np.exp(-taps ** 2 / (2 * sigma ** 2))
  kernel /= kernel.sum()
  angle = np.deg2rad(rng.uniform(-45, 45, n))[:, None]
  # It rounds each tap's offset half down: ceil(v - 0.5).
  d_col = np.ceil(taps * np.cos(angle) - 0.5).astype(np.int64)
  d_row = np.ceil(taps * np.sin(angle) - 0.5).astype(np.int64)
  every = np.arange(n)[:, None, None]
  out = np.zeros(images.shape, np.float64)
  for k, weight in enumerate(kernel):
    rows = np.clip(np.arange(h) + d_row[:, k, None], 0, h - 1)[:, :, None]
    cols = np.clip(np.arange(w) + d_col[:, k, None], 0, w - 1)[:, None, :]
    out += weight * images[every, rows, cols]
  return out


def shear(images, rng):
  amount = 0.4 * ops.random_signs(rng, len(images))
  matrix = np.zeros((len(images), 2, 2))
  # skimage's (< 0.19) AffineTransform(shear=s) in (col, row): [[1, -sin s], [0, cos s]].
  matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 1, 1] = 1, -np.sin(amount), np.cos(amount)
  return ops.about_centre(images, matrix)


def scale(images, rng):
  del rng  # MNIST-C's scale is fixed
  return ops.about_centre(images, np.tile(np.eye(2) / 0.7, (len(images), 1, 1)))


def rotate(images, rng):
  angle = 0.4 * ops.random_signs(rng, len(images))
  cos, sin = np.cos(angle), np.sin(angle)
  return ops.about_centre(images, np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1))


def brightness(images, rng):
  del rng
  value = images.max(axis=-1, keepdims=True)  # HSV's V; scaling RGB by V'/V keeps H and S
  lifted = np.minimum(value + 0.5, 1.0)
  return np.where(value > 0, images * (lifted / np.maximum(value, 1e-12)), lifted)


def translate(images, rng):
  n = len(images)
  offset = ops.pixels(3, images) * ops.random_signs(rng, (n, 2))
  return ops.warp(images, np.tile(np.eye(2), (n, 1, 1)), offset)


def stripe(images, rng):
  del rng
  width = images.shape[2]
  side = max(1, round(7 * width / 28))
  out = images.copy()
  out[:, :, :side] = 1 - out[:, :, :side]
  out[:, :, width - side:] = 1 - out[:, :, width - side:]
  return out


def fog(images, rng):
  n, h, w, _ = images.shape
  fields = np.empty((n, 28, 28), np.float32)
  # MNIST-C's plasma_fractal, drawn with numpy's Generator in chunks of 64 maps (16 MiB).
  for start in range(0, n, 64):
    count = min(64, n - start)
    fields[start:start + count] = ops.plasma(rng, count)
  fields = ops.to_size(fields, h, w)[..., None]
  peak = images.max(axis=(1, 2, 3), keepdims=True)
  return (images + 3.0 * fields) * peak / (peak + 3.0)


def spatter(images, rng):
  n, h, w, _ = images.shape
  liquid = ndimage.gaussian_filter(rng.normal(0.65, 0.3, (n, 28, 28)), (0, 1, 1),
                                   mode="nearest")
  mud = ndimage.gaussian_filter((liquid > 0.65).astype(np.float64), (0, 1.5, 1.5),
                                mode="nearest")
  mud = ops.to_size(np.where(mud < 0.8, 0.0, mud), h, w)[..., None]
  return images * (1 - mud) + (63 / 255) * mud


def dotted_line(images, rng):
  n, h, w, _ = images.shape
  rows = rng.integers(0, h - 1, size=(2, n))
  line = ops.lines(h, w, np.zeros(n), rows[0], np.full(n, w - 1.0), rows[1], ops.line_width(images))
  dash = ops.pixels(2, images)
  line[:, :, (np.arange(w) // dash) % 2 == 0] = 0  # off, on, off, ... from the left
  return images + line[..., None]


def _zigzag_points(start_row, end_row, first, last, tooth, height):
  """MNIST-C's zigzag vertices (column, row) for one image, formula for the last included."""
  theta = math.atan((end_row - start_row) / (last - first))
  length = (last - first) / math.cos(theta)
  points = [(0.0, 0.0)]
  for i in range(int((length - tooth) // (2 * tooth)) + 1):
    points.append(((2 * i + 1) * tooth, (-1) ** i * height))
  covered = 2 * tooth * (length // (2 * tooth))
  if length != covered:
    points.append((length, points[-1][1] / (2 * (length - covered))))
  cols, rows = np.array(points).T
  return (first + cols * math.cos(theta) - rows * math.sin(theta),
          start_row + cols * math.sin(theta) + rows * math.cos(theta))


def zigzag(images, rng):
  n, h, w, _ = images.shape
  s = ops.size_factor(images)
  first, last, tooth = 2 * s, 25 * s, max(2 * s, 1.0)
  tilt = ops.pixels(5, images)
  start = rng.integers(0, h - 1, size=n)
  end = start + rng.integers(-tilt, tilt, size=n)
  paths = [_zigzag_points(a, b, first, last, tooth, tooth) for a, b in zip(start, end)]
  longest = max(len(cols) for cols, _ in paths)
  # Pad each path by repeating its last vertex: a segment of no width draws nothing.
  cols = np.array([np.pad(c, (0, longest - len(c)), mode="edge") for c, _ in paths])
  rows = np.array([np.pad(r, (0, longest - len(r)), mode="edge") for _, r in paths])

  def draw(cols, rows):  # adding all, then clipping once, equals MNIST-C's clip per line
    return sum(ops.lines(h, w, cols[:, k - 1], rows[:, k - 1], cols[:, k], rows[:, k],
                      ops.line_width(images)) for k in range(1, longest))

  return images + ops.by_chunks(draw, cols, rows)[..., None]


def canny_edges(images, rng):
  del rng
  n, h, w, c = images.shape
  grey = np.moveaxis(images, -1, 1).reshape(n * c, h, w).astype(np.float64)
  edges = ops.by_chunks(lambda x: ops.canny(x, sigma=ops.size_factor(images)), grey)
  return np.moveaxis(edges.reshape(n, c, h, w), 1, -1).astype(np.float32)


# ---------------------------------------------------------------- legacy (severity 5)

def _legacy_blur(images, sigma):
  """jaxtl's earlier separable Gaussian blur, edges reflected."""
  radius = max(int(3 * sigma), 1)
  t = np.arange(-radius, radius + 1)
  kernel = np.exp(-0.5 * (t / sigma) ** 2)
  kernel /= kernel.sum()
  out = images
  for axis in (1, 2):
    pad = [(0, 0)] * 4
    pad[axis] = (radius, radius)
    padded = np.pad(out, pad, mode="reflect")
    out = sum(k * np.take(padded, np.arange(i, i + images.shape[axis]), axis=axis)
              for i, k in enumerate(kernel))
  return out


def gaussian_noise(images, rng):
  return images + rng.normal(size=images.shape) * 0.38


def blur(images, rng):
  del rng
  return _legacy_blur(images, 1.3 * images.shape[1] / 28 * 1.5)


def contrast(images, rng):
  del rng
  mean = images.mean(axis=(1, 2, 3), keepdims=True)
  return (images - mean) * 0.05 + mean


def inversion(images, rng):
  del rng
  return 1.0 - images


for _name in MNIST_C + LEGACY:
  register_corruption(_name, globals()[_name])
del _name
