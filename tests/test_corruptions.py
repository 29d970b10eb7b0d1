import numpy as np
import pytest

from jaxtl.data import corruptions, image_ops
from jaxtl.data.corruptions import (LEGACY, MNIST_C, corrupt, corruption_names,
                                    register_corruption)
from jaxtl.errors import ConfigError

BUILT_IN = MNIST_C + LEGACY
# Corruptions that draw nothing: equal for every seed.
FIXED = ("scale", "brightness", "stripe", "canny_edges", "blur", "contrast", "inversion")


def strokes(size: int, count: int = 16, seed: int = 0) -> np.ndarray:
  """MNIST-like images (count, size, size, 1): an ellipse and a bar of ink ~2/28 of the
  image wide, inside MNIST's central 20x20 box, antialiased, on a 0 background."""
  rng = np.random.default_rng(seed)
  centre = (size - 1) / 2
  rows, cols = np.mgrid[0:size, 0:size] - centre
  half_width = max(1.2 * size / 28, 0.6)
  images = np.zeros((count, size, size, 1), np.float32)
  for image in images:
    dr, dc = rng.uniform(-1, 1, 2) * size / 28
    a, b = rng.uniform(3, 6, 2) * size / 28
    ring = np.abs(np.hypot((rows - dr) / a, (cols - dc) / b) - 1) * min(a, b)
    angle = rng.uniform(0, np.pi)
    along = (rows - dr) * np.cos(angle) + (cols - dc) * np.sin(angle)
    across = -(rows - dr) * np.sin(angle) + (cols - dc) * np.cos(angle)
    bar = np.where(np.abs(along) <= 8 * size / 28, np.abs(across), np.inf)
    image[..., 0] = np.clip(1.5 - np.minimum(ring, bar) / half_width, 0, 1)
  return images


@pytest.fixture(scope="module", params=[28, 8], ids=["28x28", "8x8"])
def images(request):
  return strokes(request.param)


@pytest.fixture
def registry(monkeypatch):
  """A private copy of the registry: what a test registers is gone afterwards."""
  monkeypatch.setattr(corruptions, "_REGISTRY", dict(corruptions._REGISTRY))


def mass(x):
  return x.sum(axis=(1, 2, 3))


def centre_of_mass(x):
  grey = x[..., 0]
  rows, cols = np.mgrid[0:grey.shape[1], 0:grey.shape[2]]
  total = grey.sum(axis=(1, 2))
  return np.stack([(grey * rows).sum(axis=(1, 2)) / total,
                   (grey * cols).sum(axis=(1, 2)) / total], -1)


def test_names_and_order():
  assert len(MNIST_C) == 15 and MNIST_C[0] == "shot_noise" and MNIST_C[-1] == "canny_edges"
  assert corruption_names()[:len(BUILT_IN)] == BUILT_IN
  assert "impulse_noise" in MNIST_C and "fog" in MNIST_C  # MNIST-C's replace the old ones


def test_strokes_look_like_mnist():
  x = strokes(28)
  assert 0.05 < x.mean() < 0.25 and x.max() == 1.0
  assert x[:, :4].max() == 0 and x[:, :, :4].max() == 0  # a 4-pixel empty margin


@pytest.mark.parametrize("name", BUILT_IN)
def test_contract(name, images):
  before = images.copy()
  out = corrupt(images, name, seed=1)
  np.testing.assert_array_equal(images, before)  # the input is not modified
  assert out.shape == images.shape and out.dtype == np.float32
  assert 0.0 <= out.min() and out.max() <= 1.0
  np.testing.assert_array_equal(out, corrupt(images, name, seed=1))
  assert np.abs(out - images).mean() > 1e-3, "the corruption changed (almost) nothing"
  other = corrupt(images, name, seed=2)
  if name in FIXED:
    np.testing.assert_array_equal(out, other)
  else:
    assert not np.array_equal(out, other)


@pytest.mark.parametrize("name", BUILT_IN)
def test_float64_input_and_empty_batch(name):
  x = strokes(28, count=2)
  np.testing.assert_allclose(corrupt(x.astype(np.float64), name, 3), corrupt(x, name, 3),
                             atol=1e-5)
  empty = corrupt(x[:0], name, 3)
  assert empty.shape == (0, 28, 28, 1) and empty.dtype == np.float32


def test_gaussian_noise_is_bit_identical_to_the_old_severity_5():
  x = strokes(28)
  for seed in (0, 7):
    rng = np.random.default_rng(seed)  # jaxtl.data.shifts.corrupt before MNIST-C
    old = np.clip(x + rng.normal(size=x.shape) * 0.38, 0.0, 1.0).astype(np.float32)
    np.testing.assert_array_equal(corrupt(x, "gaussian_noise", seed), old)


def test_legacy_blur_contrast_inversion_equal_the_old_severity_5():
  x = strokes(28)
  sigma = 1.3 * 28 / 28 * 1.5
  radius = max(int(3 * sigma), 1)
  kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  kernel /= kernel.sum()
  blurred = x
  for axis in (1, 2):
    blurred = np.apply_along_axis(
        lambda v: np.convolve(np.pad(v, radius, mode="reflect"), kernel, "valid"), axis, blurred)
  np.testing.assert_allclose(corrupt(x, "blur", 0), blurred, atol=1e-6)
  mean = x.mean(axis=(1, 2, 3), keepdims=True)
  np.testing.assert_allclose(corrupt(x, "contrast", 0), (x - mean) * 0.05 + mean, atol=1e-7)
  np.testing.assert_array_equal(corrupt(x, "inversion", 0), 1 - x)


def test_shot_noise_keeps_the_background_and_the_expected_mean():
  x = strokes(28)
  out = corrupt(x, "shot_noise", 0)
  assert out[x == 0].max() == 0  # Poisson(0) = 0
  assert set(np.unique(np.round(out * 3, 5))) <= {0.0, 1.0, 2.0, 3.0}  # counts / 3
  # E[min(Poisson(3 x) / 3, 1)]: the mean is unchanged but for the clipping at 1.
  lam = 3.0 * x.astype(np.float64)
  p0, p1, p2 = np.exp(-lam), lam * np.exp(-lam), lam ** 2 / 2 * np.exp(-lam)
  expected = p1 / 3 + 2 * p2 / 3 + (1 - p0 - p1 - p2)
  assert abs(out.mean() - expected.mean()) < 0.005
  assert abs(out.mean() - x.mean()) < 0.2 * x.mean()


def test_impulse_noise_flips_17_percent_to_0_or_1():
  x = strokes(28)
  out = corrupt(x, "impulse_noise", 0)
  salt, pepper = (out == 1) & (x != 1), (out == 0) & (x != 0)
  changed = out != x
  assert np.all(np.isin(out[changed], (0.0, 1.0)))
  # Of the pixels that are neither 0 nor 1, 8.5% become 1 and 8.5% become 0.
  between = (x != 0) & (x != 1)
  assert abs(salt[between].mean() - 0.085) < 0.03 and abs(pepper[between].mean() - 0.085) < 0.03
  # The mean moves to 0.83 m + 0.085 (half of the 17% are salt).
  assert abs(out.mean() - (0.83 * x.mean() + 0.085)) < 0.01


def test_brightness_adds_half_to_grey():
  x = strokes(28)
  out = corrupt(x, "brightness", 0)
  assert out.mean() > x.mean() + 0.3
  np.testing.assert_allclose(out, np.minimum(x + 0.5, 1.0), atol=1e-6)
  # Colour: value up by 0.5, hue and saturation kept (the channels' ratios).
  rgb = np.concatenate([x * 0.2, x * 0.4, x * 0.2 + 0.1], -1)
  out = corrupt(rgb, "brightness", 0)
  np.testing.assert_allclose(out.max(-1), np.minimum(rgb.max(-1) + 0.5, 1), atol=1e-6)
  np.testing.assert_allclose(out[..., 0] * rgb[..., 1], out[..., 1] * rgb[..., 0], atol=1e-6)


@pytest.mark.parametrize("size,shift", [(28, 3), (8, 1)])
def test_translate_moves_the_centre_of_mass_and_keeps_the_ink(size, shift):
  x = strokes(size)
  out = corrupt(x, "translate", 0)
  np.testing.assert_allclose(mass(out), mass(x), rtol=0.02 if size == 28 else 0.15)
  moved = centre_of_mass(out) - centre_of_mass(x)
  if size == 28:  # nothing leaves the frame: an exact shift of 3 along both axes
    np.testing.assert_allclose(np.abs(moved), shift, atol=1e-4)
  else:
    assert np.all(np.abs(moved) > 0.5)
  assert len(np.unique(np.sign(moved[:, 0]))) == 2  # both directions occur


def test_rotate_shear_scale_about_the_centre():
  x = strokes(28)
  rotated = corrupt(x, "rotate", 0)
  np.testing.assert_allclose(mass(rotated), mass(x), rtol=0.03)
  # Rotated, not moved: the centre of mass stays within a pixel of where it would be
  # rotated to about (13.5, 13.5), and the second moments turn.
  assert np.all(np.abs(np.linalg.norm(centre_of_mass(rotated) - 13.5, axis=1) -
                       np.linalg.norm(centre_of_mass(x) - 13.5, axis=1)) < 1.0)
  # Shear maps area by 1 / cos(0.4); scale shrinks it to 0.7 ** 2.
  np.testing.assert_allclose(mass(corrupt(x, "shear", 0)) / mass(x), 1 / np.cos(0.4),
                             rtol=0.03)
  np.testing.assert_allclose(mass(corrupt(x, "scale", 0)) / mass(x), 0.49, rtol=0.06)
  small = corrupt(x, "scale", 0)
  np.testing.assert_allclose(centre_of_mass(small) - 13.5,
                             0.7 * (centre_of_mass(x) - 13.5), atol=0.05)


def test_rotate_angle_is_plus_or_minus_0_4_rad():
  # A single bright pixel right of the centre ends up 0.4 rad above or below the axis.
  x = np.zeros((16, 29, 29, 1), np.float32)
  x[:, 14, 24] = 1.0
  com = centre_of_mass(corrupt(x, "rotate", 0)) - 14.0
  angles = np.arctan2(com[:, 0], com[:, 1])
  np.testing.assert_allclose(np.abs(angles), 0.4, atol=0.02)
  assert np.any(angles > 0) and np.any(angles < 0)


def test_glass_and_motion_blur_keep_the_ink():
  x = strokes(28)
  for name in ("glass_blur", "motion_blur"):
    np.testing.assert_allclose(mass(corrupt(x, name, 0)), mass(x), rtol=0.02)
  # MNIST-C's glass blur blurs along columns only, and a pixel swapped with one up and
  # to its left (randint(-1, 1)) moves at most one column right per pass: a lit pixel at
  # column 14 leaves columns 17 and on exactly dark, where a 2-D blur would not.
  one = np.zeros((16, 28, 28, 1), np.float32)
  one[:, 14, 14] = 1.0
  out = corrupt(one, "glass_blur", 0)[..., 0]
  assert np.all(out[:, :, 17:] == 0) and np.any(out[:, :, :14] > 0)


def test_glass_blur_equals_mnist_c_pixel_loop_for_one_image():
  """The batched swaps are MNIST-C's sequential per-pixel loop: with one image and the
  same draws (moves?, then the two offsets, at each pixel) the result is identical."""
  from scipy import ndimage
  x = strokes(28, count=1, seed=3)
  rng = np.random.default_rng(11)
  grid = ndimage.gaussian_filter1d(x[0, :, :, 0].astype(np.float64), 0.7, axis=0,
                                   mode="nearest")
  for _ in range(2):
    for h in range(27, 1, -1):
      for w in range(27, 1, -1):
        moves = rng.random(1)[0] < 0.5
        dh, dw = rng.integers(-1, 1, size=(2, 1))[:, 0]
        if moves:
          grid[h, w], grid[h + dh, w + dw] = grid[h + dh, w + dw], grid[h, w]
  grid = ndimage.gaussian_filter1d(grid, 0.7, axis=0, mode="nearest")
  np.testing.assert_allclose(corrupt(x, "glass_blur", 11)[0, :, :, 0],
                             np.clip(grid, 0, 1), atol=1e-6)


def test_motion_blur_smears_a_point_one_way():
  """ImageMagick's kernel: 21 taps at 0..20 pixels along the angle (within 45 degrees of
  the row), rounded to whole pixels, weighted by a half Gaussian with sigma 3."""
  x = np.zeros((16, 28, 28, 1), np.float32)
  x[:, 14, 24] = 1.0
  out = corrupt(x, "motion_blur", 0)
  np.testing.assert_allclose(mass(out), 1.0, atol=1e-6)
  taps = np.arange(21)
  weights = np.exp(-taps ** 2 / 18) / np.exp(-taps ** 2 / 18).sum()
  mean_tap = (taps * weights).sum()  # 2.09; rounding offsets to pixels lengthens diagonals
  trail = centre_of_mass(out) - (14, 24)
  assert np.all((np.hypot(*trail.T) > mean_tap - 0.1) & (np.hypot(*trail.T) < mean_tap + 0.3))
  assert np.all(trail[:, 1] < 0) and np.all(np.abs(trail[:, 0]) <= -trail[:, 1] + 0.3)


def test_zigzag_vertices_are_mnist_c_s():
  # A level zigzag from column 2 to 25 at row 10: teeth 2 long and 2 high, then MNIST-C's
  # last vertex at row -2 / (2 (23 - 20)) relative to the line.
  cols, rows = corruptions._zigzag_points(10, 10, 2.0, 25.0, 2.0, 2.0)
  np.testing.assert_allclose(cols, [2, 4, 8, 12, 16, 20, 24, 25])
  np.testing.assert_allclose(rows - 10, [0, 2, -2, 2, -2, 2, -2, -1 / 3])


def test_stripe_inverts_the_left_and_right_quarters():
  x = strokes(28)
  out = corrupt(x, "stripe", 0)
  np.testing.assert_array_equal(out[:, :, 7:21], x[:, :, 7:21])
  np.testing.assert_array_equal(out[:, :, :7], 1 - x[:, :, :7])
  np.testing.assert_array_equal(out[:, :, 21:], 1 - x[:, :, 21:])
  assert np.array_equal(corrupt(strokes(8), "stripe", 0)[:, :, 2:6], strokes(8)[:, :, 2:6])


def test_fog_fractal_is_mnist_c_diamond_square():
  """`_plasma` builds the map level by level and keeps only the crop; MNIST-C fills one
  256x256 torus in place. With the same draws (per level: centres, top, left) they agree."""
  def full_map(rng, count, size=256, decay=1.4):
    maps = np.zeros((count, size, size), np.float32)
    step, wibble = size, 100.0
    while step >= 2:
      half, k = step // 2, size // step
      noise = rng.random((3, count, k, k), dtype=np.float32)
      noise = noise * np.float32(2 * wibble ** 2) - np.float32(wibble ** 2)
      c = maps[:, ::step, ::step]
      maps[:, half::step, half::step] = (c + np.roll(c, -1, 1) + np.roll(c, -1, 2) +
                                         np.roll(c, (-1, -1), (1, 2))) / 4 + noise[0]
      m = maps[:, half::step, half::step]
      maps[:, ::step, half::step] = (m + np.roll(m, 1, 1) + c + np.roll(c, -1, 2)) / 4 + noise[1]
      maps[:, half::step, ::step] = (m + np.roll(m, 1, 2) + c + np.roll(c, -1, 1)) / 4 + noise[2]
      step, wibble = half, wibble / decay
    low, high = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
    return ((maps - low) / (high - low))[:, :28, :28]

  np.testing.assert_allclose(image_ops.plasma(np.random.default_rng(4), 3),
                             full_map(np.random.default_rng(4), 3), atol=1e-6)


def test_fog_brightens_the_background_and_lowers_contrast():
  x = strokes(28)
  out = corrupt(x, "fog", 0)
  # The fog of a seed does not depend on the images: for two images of peak 1 the result
  # is (x + 3 fog) / 4, so the difference of the results is a quarter of theirs.
  dot = np.zeros_like(x)
  dot[:, 14, 14] = 1.0
  np.testing.assert_allclose(out - corrupt(dot, "fog", 0), (x - dot) / 4, atol=1e-6)
  background = x == 0
  assert out[background].mean() > 0.2
  ink = x == 1
  # (x + 3 f) / 4 with f in [0, 1]: ink minus background shrinks from 1 to 1/4 on average.
  assert abs(out[ink].mean() - out[background].mean() - 0.25) < 0.1
  assert np.all(out >= x / 4 - 1e-6) and np.all(out <= (x + 3) / 4 + 1e-6)


def test_spatter_paints_grey_mud():
  x = np.zeros((16, 28, 28, 1), np.float32)
  out = corrupt(x, "spatter", 0)
  mud = out[out > 0]
  assert 0.02 < (out > 0).mean() < 0.5
  assert np.all((mud >= 0.8 * 63 / 255 - 1e-6) & (mud <= 63 / 255 + 1e-6))


def test_lines_add_ink_where_mnist_c_draws_them():
  x = strokes(28)
  dotted = corrupt(x, "dotted_line", 0)
  assert np.all(dotted >= x)
  added = (dotted - x)[..., 0].max(axis=(0, 1))  # per column
  dashes_off = (np.arange(28) // 2) % 2 == 0
  assert np.all(added[dashes_off] == 0) and np.all(added[~dashes_off][:-1] > 0.5)
  assert added[27] == 0  # MNIST-C's line stops before its last column
  zig = corrupt(x, "zigzag", 0)
  assert np.all(zig >= x)
  drawn = ((zig - x)[..., 0] > 0).any(axis=(0, 1))
  assert not drawn[:2].any() and not drawn[26:].any() and drawn[2:25].all()


def test_canny_edges_are_binary_outlines():
  x = strokes(28)
  out = corrupt(x, "canny_edges", 0)
  assert set(np.unique(out)) == {0.0, 1.0}
  per_image = out.mean(axis=(1, 2, 3))
  assert np.all(per_image > 0.01) and np.all(per_image < 0.3)
  assert np.all(out[:, 0] == 0) and np.all(out[:, :, -1] == 0)  # never on the border
  # Edges lie on the strokes' boundaries: within a pixel of both ink and background.
  from scipy import ndimage
  near = lambda m: ndimage.binary_dilation(m, np.ones((1, 3, 3, 1), bool))
  edge = out > 0
  assert np.mean(near(x > 0.5)[edge] & near(x < 0.5)[edge]) > 0.9
  assert corrupt(np.zeros_like(x), "canny_edges", 0).max() == 0


@pytest.mark.parametrize("slope", [0.3, 0.7, -0.3, -0.7, 1.5, 3.0, -1.5, -3.0])
def test_canny_finds_a_straight_edge_at_every_angle(slope):
  """A step edge gives one thin, unbroken line of edges on the boundary, in each of the
  four gradient sectors of the non-maximum suppression."""
  rows, cols = np.mgrid[0:28, 0:28] - 13.5
  x = (cols + slope * rows > 0.3).astype(np.float32)[None, :, :, None]
  r, c = np.nonzero(corrupt(x, "canny_edges", 0)[0, :, :, 0])
  assert np.all(np.abs(c - 13.5 + slope * (r - 13.5) - 0.3) / np.hypot(1, slope) < 0.6)
  crossed = r if abs(slope) < 1 else c
  assert set(crossed) == set(range(1, 27))  # every row (column) inside the border
  assert len(r) <= 1.5 * 26


def test_unknown_corruption_names_the_value_and_the_valid_ones():
  with pytest.raises(ConfigError, match=r"'snow'.*valid corruptions.*'shot_noise'.*'inversion'"):
    corrupt(strokes(8), "snow", 0)


def test_bad_images_are_a_config_error():
  with pytest.raises(ConfigError, match=r"\(N, H, W, C\).*shape \(8, 8\)"):
    corrupt(np.zeros((8, 8), np.float32), "shot_noise", 0)
  with pytest.raises(ConfigError, match="uint8"):
    corrupt(np.zeros((2, 8, 8, 1), np.uint8), "shot_noise", 0)


def test_a_registered_function_is_used_by_corrupt(registry):
  calls = []

  def ink_blot(x, rng):
    calls.append(x.shape)
    return x + 2.0 * (rng.random(x.shape) < 0.1)  # corrupt clips to [0, 1]

  register_corruption("ink_blot", ink_blot)
  assert corruption_names() == BUILT_IN + ("ink_blot",)
  x = strokes(8)
  out = corrupt(x, "ink_blot", 5)
  assert calls == [x.shape] and out.dtype == np.float32 and out.max() == 1.0
  expected = np.clip(x + 2.0 * (np.random.default_rng(5).random(x.shape) < 0.1), 0, 1)
  np.testing.assert_array_equal(out, expected.astype(np.float32))
  np.testing.assert_array_equal(out, corrupt(x, "ink_blot", 5))


def test_register_refuses_duplicates_unless_overwrite(registry):
  with pytest.raises(ConfigError, match=r"'fog' is already registered.*overwrite=True"):
    register_corruption("fog", lambda x, rng: x)
  register_corruption("fog", lambda x, rng: 1 - x, overwrite=True)
  assert corruption_names() == BUILT_IN  # replaced in place
  np.testing.assert_array_equal(corrupt(strokes(8), "fog", 0), 1 - strokes(8))


@pytest.mark.parametrize("name", ["", "two words", "3d", "ink-blot", None, 7])
def test_register_refuses_bad_names(name, registry):
  with pytest.raises(ConfigError, match=rf"{name!r}.*identifier"):
    register_corruption(name, lambda x, rng: x)
  assert corruption_names() == BUILT_IN


def test_register_refuses_a_non_function(registry):
  with pytest.raises(ConfigError, match=r"'ink_blot'.*not callable"):
    register_corruption("ink_blot", "1 - x")


@pytest.mark.parametrize("result,message", [
    (lambda x: x[:, :4], r"'bad'.*float32 of shape \(16, 4, 8, 1\).*\(16, 8, 8, 1\)"),
    (lambda x: (x * 255).astype(np.uint8), r"'bad'.*uint8"),
    (lambda x: list(x), r"'bad'.*returned list"),
])
def test_a_wrong_output_is_a_config_error_naming_the_corruption(result, message, registry):
  register_corruption("bad", lambda x, rng: result(x))
  with pytest.raises(ConfigError, match=message):
    corrupt(strokes(8), "bad", 0)
