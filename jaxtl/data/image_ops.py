"""numpy / scipy image operations the corruptions are made of (`jaxtl.data.corruptions`):
sizes scaled to the image, bilinear affine warps about the centre, antialiased lines, a
plasma fractal and Canny edges. Float images (N, H, W, C) in [0, 1], ink bright.
"""
import numpy as np
from scipy import ndimage


def size_factor(images) -> float:
  """How many pixels one MNIST pixel is: MNIST-C's sizes are for 28x28."""
  return min(images.shape[1:3]) / 28


def pixels(size: float, images) -> int:
  """An integer size scaled to the image, at least 1: a 0-pixel shift would do nothing."""
  return max(1, round(size * size_factor(images)))


def to_size(fields: np.ndarray, height: int, width: int) -> np.ndarray:
  """(N, 28, 28) -> (N, height, width), bilinear over pixel areas."""
  if fields.shape[1:] == (height, width):
    return fields
  zoom = (1, height / fields.shape[1], width / fields.shape[2])
  return ndimage.zoom(fields, zoom, order=1, mode="nearest", grid_mode=True)


def by_chunks(fn, *arrays, size: int = 2048) -> np.ndarray:
  """fn(*arrays) computed on slices of the batch: the same result, with temporaries for
  `size` images instead of all (60,000 MNIST images would need gigabytes)."""
  return np.concatenate([fn(*(a[i:i + size] for a in arrays))
                         for i in range(0, len(arrays[0]), size)])


def warp(images: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
  """skimage's `warp(x, inverse_map=affine)` for a batch: output pixel (col, row) reads the
  input at matrix[n] @ (col, row) + offset[n], bilinear, 0 outside the image."""
  return by_chunks(bilinear, images, matrix, offset)


def bilinear(images, matrix, offset):
  n, h, w, c = images.shape
  rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
  m = matrix[:, :, :, None, None]
  src_col = m[:, 0, 0] * cols + m[:, 0, 1] * rows + offset[:, 0, None, None]
  src_row = m[:, 1, 0] * cols + m[:, 1, 1] * rows + offset[:, 1, None, None]
  top, left = np.floor(src_row), np.floor(src_col)
  down, right = src_row - top, src_col - left
  top, left = top.astype(np.int64), left.astype(np.int64)
  flat = images.reshape(n * h * w, c)
  start = (np.arange(n) * h * w)[:, None, None]
  out = np.zeros(images.shape, np.float64)
  for dr, dc, weight in ((0, 0, (1 - down) * (1 - right)), (0, 1, (1 - down) * right),
                         (1, 0, down * (1 - right)), (1, 1, down * right)):
    r, col = top + dr, left + dc
    inside = (r >= 0) & (r < h) & (col >= 0) & (col < w)
    index = start + np.clip(r, 0, h - 1) * w + np.clip(col, 0, w - 1)
    out += (weight * inside)[..., None] * flat[index]
  return out


def about_centre(images: np.ndarray, matrix: np.ndarray) -> np.ndarray:
  """`warp` by `matrix` with the offset that keeps the image centre in place, as MNIST-C
  computes it (13.5, 13.5 at 28x28)."""
  centre = (np.array(images.shape[2:0:-1], np.float64) - 1) / 2  # (col, row)
  return warp(images, matrix, centre - matrix @ centre)


def random_signs(rng, shape) -> np.ndarray:
  return rng.choice(np.array([-1.0, 1.0]), size=shape)


def line_width(images) -> float:
  # 2.3 pixels at 28x28; 1.5 at least, else a line on 8x8 misses some columns entirely.
  return max(2.3 * size_factor(images), 1.5)


def lines(height, width, c0, r0, c1, r1, line_width) -> np.ndarray:
  """MNIST-C's antialiased lines, one per image (N, H, W): through (c0, r0) and (c1, r1)
  (arrays (N,) of column, row), 1 + log(1 - d / line_width) of the vertical distance d,
  drawn in columns floor(c0) .. ceil(c1) - 1; nothing where c0 == c1."""
  c0, r0, c1, r1 = (np.asarray(v, np.float64)[:, None, None] for v in (c0, r0, c1, r1))
  cols = np.arange(width)[None, None, :]
  rows = np.arange(height)[None, :, None]
  run = np.where(c1 == c0, 1.0, c1 - c0)
  dist = np.abs(rows - ((r1 - r0) / run * (cols - c0) + r0))
  value = np.clip(1 + np.log(np.maximum(1 - dist / line_width, 1e-12)), 0.0, 1.0)
  drawn = (cols >= np.floor(c0)) & (cols < np.ceil(c1)) & (c1 != c0)
  return np.where(drawn, value, 0.0)


def plasma(rng, count: int, size: int = 256, decay: float = 1.4, crop: int = 28):
  """MNIST-C's plasma fractal (diamond-square on a torus): the top-left crop x crop of
  `count` maps size x size, each scaled to [0, 1] by its whole map's min and max.

  Each new point is the mean of its 4 neighbours plus w**2 * U(-1, 1), w = 100 at the
  coarsest step, divided by `decay` at each finer one. Built level by level as grids of
  contiguous arrays; the finest level only gives its min and max beyond the crop.
  """
  grid = np.zeros((count, 1, 1), np.float32)  # the map's points at multiples of the step
  wibble = 100.0
  while True:
    k = grid.shape[1]
    noise = rng.random((3, count, k, k), dtype=np.float32)
    noise *= np.float32(2 * wibble ** 2)
    noise -= np.float32(wibble ** 2)
    corner = np.pad(grid, ((0, 0), (0, 1), (0, 1)), mode="wrap")  # [i + 1] wraps to [0]
    centre = (corner[:, :-1, :-1] + corner[:, 1:, :-1] + corner[:, :-1, 1:] +
              corner[:, 1:, 1:]) / 4 + noise[0]
    above = np.concatenate([centre[:, -1:], centre], axis=1)  # [i] is centre [i - 1]
    before = np.concatenate([centre[:, :, -1:], centre], axis=2)
    # Midpoints of the squares' top edges and of their left edges: 2 corners, 2 centres.
    top = (above[:, 1:] + above[:, :-1] + corner[:, :-1, :-1] + corner[:, :-1, 1:]) / 4 + noise[1]
    left = (before[:, :, 1:] + before[:, :, :-1] + corner[:, :-1, :-1] +
            corner[:, 1:, :-1]) / 4 + noise[2]
    parts = [grid, centre, top, left]
    last = 2 * k == size
    if last:
      low = np.min([p.min(axis=(1, 2)) for p in parts], axis=0)[:, None, None]
      high = np.max([p.max(axis=(1, 2)) for p in parts], axis=0)[:, None, None]
      k = (crop + 1) // 2
      parts = [p[:, :k, :k] for p in parts]
    grid = np.empty((count, 2 * k, 2 * k), np.float32)
    grid[:, ::2, ::2], grid[:, 1::2, 1::2], grid[:, ::2, 1::2], grid[:, 1::2, ::2] = parts
    if last:
      return (grid[:, :crop, :crop] - low) / (high - low)
    wibble /= decay


def canny(x: np.ndarray, sigma: float, low: float = 0.1, high: float = 0.2) -> np.ndarray:
  """skimage's Canny edges (feature.canny) of grey images (N, H, W), as a bool array:
  Gaussian smoothing normalised at the border, Sobel gradients, non-maximum suppression
  interpolated between the two neighbours around the gradient direction, hysteresis with
  8-connected edges; the 1-pixel border is never an edge."""
  n, h, w = x.shape
  bleed = ndimage.gaussian_filter(np.ones((h, w)), sigma, mode="constant")
  smooth = ndimage.gaussian_filter(x, (0, sigma, sigma), mode="constant") / (
      bleed + np.finfo(np.float64).eps)
  # Sobel within each image: derivative along one axis, [1, 2, 1] along the other only.
  d_row = ndimage.correlate1d(ndimage.correlate1d(smooth, [-1, 0, 1], axis=1), [1, 2, 1], axis=2)
  d_col = ndimage.correlate1d(ndimage.correlate1d(smooth, [-1, 0, 1], axis=2), [1, 2, 1], axis=1)
  magnitude = np.hypot(d_row, d_col)
  a_row, a_col = np.abs(d_row), np.abs(d_col)
  padded = np.pad(magnitude, ((0, 0), (1, 1), (1, 1)))
  at = lambda dr, dc: padded[:, 1 + dr:1 + dr + h, 1 + dc:1 + dc + w]
  interior = np.zeros((h, w), bool)
  interior[1:-1, 1:-1] = True
  candidate = interior & (magnitude > 0)
  same, opposite = d_row * d_col >= 0, d_row * d_col <= 0  # signs; a zero is both
  mostly_rows, mostly_cols = a_row >= a_col, a_row <= a_col
  ratio = lambda a, b: np.divide(a, b, out=np.zeros_like(a), where=b > 0)
  col_over_row, row_over_col = ratio(a_col, a_row), ratio(a_row, a_col)
  # Gradient sectors 0-45, 45-90, 90-135, 135-180 degrees in skimage's order (a later one
  # wins on a shared boundary): the weight, the nearer and the diagonal neighbour ahead;
  # the two behind are their mirror images.
  sectors = ((same & mostly_rows, col_over_row, (1, 0), (1, 1)),
             (same & mostly_cols, row_over_col, (0, 1), (1, 1)),
             (opposite & mostly_cols, row_over_col, (0, 1), (-1, 1)),
             (opposite & mostly_rows, col_over_row, (-1, 0), (-1, 1)))
  maxima = np.zeros(x.shape, bool)
  for where, weight, near, far in sectors:
    ahead = at(*far) * weight + at(*near) * (1 - weight)
    behind = at(-far[0], -far[1]) * weight + at(-near[0], -near[1]) * (1 - weight)
    maxima = np.where(candidate & where, (ahead <= magnitude) & (behind <= magnitude), maxima)
  weak = maxima & (magnitude >= low)
  connect = np.zeros((3, 3, 3), bool)
  connect[1] = True  # 8-connected within an image, never across the batch
  labels, _ = ndimage.label(weak, connect)
  keep = np.zeros(labels.max() + 1, bool)
  keep[labels[maxima & (magnitude >= high)]] = True
  keep[0] = False
  return keep[labels]
