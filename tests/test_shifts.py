
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxtl import partition
from jaxtl.data import corruptions, shifts
from jaxtl.data.datasets import load_dataset, usps_to_28
from jaxtl.data.shifts import SHIFTS, make_shift, patch_positions
from jaxtl.finetune import auto
from jaxtl.finetune.multitask import HEAD, multitask_loss
from jaxtl.models import build_model
from tests import reference

PARTS = ("source_train", "source_test", "target_train", "target_test")


def _within_binomial(hits: np.ndarray, p: float, sigmas: float = 5.0):
  """The fraction of hits is p up to `sigmas` standard deviations of a binomial mean."""
  tolerance = sigmas * np.sqrt(p * (1 - p) / len(hits))
  assert abs(hits.mean() - p) <= tolerance, (hits.mean(), p, tolerance)


@pytest.mark.parametrize("shift,dataset", [(s, "digits") for s in SHIFTS if s != "natural"] +
                         [("natural", "mnist"), ("feature", "fashion_mnist")])
def test_shifts_are_deterministic(shift, dataset, request):
  data_dir = "" if dataset == "digits" else request.getfixturevalue("data_dir")
  a, b = (make_shift(shift, dataset, data_dir=data_dir, seed=3) for _ in range(2))
  assert a.source_key == b.source_key and a.num_classes == b.num_classes
  for part in PARTS:
    x, y = getattr(a, part), getattr(b, part)
    assert np.array_equal(x.images, y.images) and np.array_equal(x.labels, y.labels)
    assert x.metadata.keys() == y.metadata.keys()
    assert all(np.array_equal(x.metadata[key], y.metadata[key]) for key in x.metadata)
  if shift in ("input", "output", "spurious"):  # the seed is what makes them
    c = make_shift(shift, dataset, seed=4)
    assert not all(np.array_equal(getattr(a, p).images, getattr(c, p).images) and
                   np.array_equal(getattr(a, p).labels, getattr(c, p).labels)
                   for p in ("target_train", "target_test"))


def test_input_shift_changes_images_not_labels():
  t = make_shift("input", "digits", corruption="impulse_noise", seed=5)
  clean = load_dataset("digits", "train")
  np.testing.assert_array_equal(t.source_train.images, clean.images)
  np.testing.assert_array_equal(t.source_train.labels, t.target_train.labels)
  np.testing.assert_array_equal(t.source_test.labels, t.target_test.labels)
  # Train and test are corrupted with their own seeds (seed + 1, seed + 2).
  np.testing.assert_array_equal(
      t.target_train.images, shifts.corrupt(t.source_train.images, "impulse_noise", 6))
  np.testing.assert_array_equal(
      t.target_test.images, shifts.corrupt(t.source_test.images, "impulse_noise", 7))
  assert not np.array_equal(t.source_train.images, t.target_train.images)
  assert t.source_key == make_shift("output", "digits").source_key == "digits:clean"


def test_input_shift_on_fashion_mnist(data_dir):
  t = make_shift("input", "fashion_mnist", data_dir=data_dir, corruption="inversion")
  assert t.source_key == "fashion_mnist:clean" and t.num_classes == 10
  assert np.array_equal(t.target_test.labels, t.source_test.labels)
  np.testing.assert_allclose(t.target_test.images, 1.0 - t.source_test.images, atol=1e-7)


def test_input_shift_reads_the_corruption_names_at_call_time(monkeypatch):
  with pytest.raises(ValueError, match=r"'ink_blot'.*valid corruptions.*gaussian_noise"):
    make_shift("input", "digits", corruption="ink_blot")
  # A corruption registered after import is accepted. (A copy of the registry: the
  # registration ends with the test.)
  monkeypatch.setattr(corruptions, "_REGISTRY", dict(corruptions._REGISTRY))
  corruptions.register_corruption("ink_blot", lambda images, rng: 1.0 - images)
  t = make_shift("input", "digits", corruption="ink_blot")
  np.testing.assert_array_equal(t.target_test.images, 1.0 - t.source_test.images)


def test_natural_shift_is_mnist_to_usps_at_28x28(data_dir):
  t = make_shift("natural", "mnist", data_dir=data_dir)
  assert t.num_classes == 10 and t.source_key == "mnist:clean"
  for part, split in (("source_train", "train"), ("source_test", "test")):  # source untouched
    clean = load_dataset("mnist", split, data_dir=data_dir)
    assert np.array_equal(getattr(t, part).images, clean.images)
    assert np.array_equal(getattr(t, part).labels, clean.labels)
  assert t.target_train.images.shape == (7291, 28, 28, 1)
  assert t.target_test.images.shape == (2007, 28, 28, 1)
  for ds in (t.target_train, t.target_test):
    assert ds.name == "usps" and ds.source == "mirror:usps/usps.npz"
    assert ds.images.dtype == np.float32 and 0 <= ds.images.min() and ds.images.max() <= 1
    assert set(ds.labels.tolist()) == set(range(10))
  usps = load_dataset("usps", "test", data_dir=data_dir)
  np.testing.assert_array_equal(t.target_test.images, usps_to_28(usps.images))
  np.testing.assert_array_equal(t.target_test.labels, usps.labels)
  stretched = make_shift("natural", "mnist", data_dir=data_dir, usps_resize="stretch")
  np.testing.assert_array_equal(stretched.target_test.images,
                                usps_to_28(usps.images, "stretch"))


def test_output_shift_changes_labels_not_images():
  t = make_shift("output", "digits")
  np.testing.assert_array_equal(t.source_train.images, t.target_train.images)
  assert np.all(t.source_train.labels != t.target_train.labels)  # a permutation, no fixed point
  mapping = {s: d for s, d in zip(t.source_train.labels, t.target_train.labels)}
  assert sorted(mapping.values()) == list(range(10))


def test_feature_shift_uses_disjoint_subclasses():
  t = make_shift("feature", "digits")
  assert t.num_classes == 5
  # Same superclasses in both, made of different digits: no source image is a target image.
  assert set(t.source_train.labels) == set(t.target_train.labels) == set(range(5))
  src = {x.tobytes() for x in t.source_train.images}
  assert not any(x.tobytes() in src for x in t.target_train.images)


def test_feature_shift_on_fashion_mnist_uses_the_superclass_table(data_dir):
  t = make_shift("feature", "fashion_mnist", data_dir=data_dir)
  assert t.num_classes == 5 and t.source_key == "fashion_mnist:feature"
  assert [name for name, _, _ in shifts.FASHION_SUPERCLASSES] == [
      "tops", "outerwear", "long garments", "low shoes", "bags & boots"]
  clean = load_dataset("fashion_mnist", "train", data_dir=data_dir)
  of_class = lambda c: clean.images[clean.labels == c]
  # Source: T-shirt/top is "tops" (0), Bag is "bags & boots" (4); target: Shirt is "tops",
  # Coat "outerwear" (1), Ankle boot "bags & boots".
  for part, superclass, fashion_class in (("source_train", 0, 0), ("source_train", 4, 8),
                                          ("target_train", 0, 6), ("target_train", 1, 4),
                                          ("target_train", 4, 9)):
    ds = getattr(t, part)
    np.testing.assert_array_equal(ds.images[ds.labels == superclass], of_class(fashion_class))
  for part in PARTS:  # 6000 (train) / 1000 (test) images of each of the 5 subclasses
    ds = getattr(t, part)
    per_class = 6000 if part.endswith("train") else 1000
    assert np.bincount(ds.labels).tolist() == [per_class] * 5
  src = {x.tobytes() for x in t.source_test.images}
  assert not any(x.tobytes() in src for x in t.target_test.images)


def test_feature_shift_on_omniglot_keeps_alphabets_as_classes(data_dir):
  t = make_shift("feature", "omniglot", data_dir=data_dir, omniglot_alphabets=5)
  assert t.num_classes == 5 and set(t.target_test.labels) == set(range(5))


@pytest.mark.parametrize("size,side", [(28, 4), (8, 2)])
def test_spurious_patches_sit_on_the_border_without_overlap(size, side):
  got_side, corners = patch_positions(size, size, 10)
  assert got_side == side and corners.shape == (10, 2)
  cover = np.zeros((size, size), int)
  for r, c in corners:
    cover[r:r + side, c:c + side] += 1
    assert min(r, c) == 0 or max(r, c) == size - side  # touches an edge
  assert cover.max() == 1 and cover.sum() == 10 * side * side
  with pytest.raises(ValueError, match="do not fit"):
    patch_positions(8, 8, 13)


def _patch_masks(ds, size):
  """Where each image's patch is, from its recorded position."""
  side, corners = patch_positions(size, size, 10)
  masks = np.zeros(ds.images.shape, bool)
  for k, (r, c) in enumerate(corners):
    masks[ds.metadata["nuisance"] == k, r:r + side, c:c + side] = True
  return masks


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
def test_spurious_shift_changes_only_the_patch_pixels(dataset, request):
  data_dir = "" if dataset == "digits" else request.getfixturevalue("data_dir")
  t = make_shift("spurious", dataset, data_dir=data_dir, seed=2)
  size = 8 if dataset == "digits" else 28
  for part, split in zip(PARTS, ("train", "test") * 2):
    ds, clean = getattr(t, part), load_dataset(dataset, split, data_dir=data_dir)
    np.testing.assert_array_equal(ds.labels, clean.labels)
    # The clean images with only the patch pixels set to 1.
    expected = np.where(_patch_masks(ds, size), np.float32(1.0), clean.images)
    assert np.array_equal(ds.images, expected)
    assert ds.metadata["nuisance"].dtype == np.int32


@pytest.mark.parametrize("correlation", [0.95, 0.7])
def test_spurious_position_follows_the_label_in_the_source_only(data_dir, correlation):
  t = make_shift("spurious", "mnist", data_dir=data_dir, spurious_correlation=correlation)
  assert t.source_key == f"mnist:spurious:{correlation:g}:seed0"
  for part in PARTS:
    ds = getattr(t, part)
    agree = ds.metadata["nuisance"] == ds.labels
    _within_binomial(agree, correlation if part.startswith("source") else 1 / 10)
  # Disagreeing source examples spread uniformly over the 9 other positions.
  ds = t.source_train
  wrong = ds.metadata["nuisance"] != ds.labels
  offset = (ds.metadata["nuisance"][wrong] - ds.labels[wrong]) % 10
  for k in range(1, 10):
    _within_binomial(offset == k, 1 / 9)


def test_bad_shift_arguments_name_the_valid_ones():
  for kwargs, match in [(dict(name="label"), "valid shifts.*spurious"),
                        (dict(dataset="cifar"), "valid datasets.*fashion_mnist"),
                        (dict(name="natural"), r"'digits'.*valid datasets: \('mnist',\)"),
                        (dict(corruption="snow"), "valid corruptions"),
                        (dict(usps_resize="lanczos"), "valid.*box20"),
                        (dict(spurious_correlation=1.5), "valid: 0..1")]:
    args = dict(dict(name="spurious", dataset="digits"), **kwargs)
    with pytest.raises(ValueError, match=match):
      make_shift(args.pop("name"), args.pop("dataset"), **args)


GRADS = {"a": jnp.array([3.0, 4.0]), "b": {"c": jnp.array([[1.0, 0.0]])}}
PARAMS = {"a": jnp.array([10.0, 0.0]), "b": {"c": jnp.array([[0.5, 0.5]])}}


def test_auto_rgn_scales_match_the_formula():
  # ||g_a|| / ||w_a|| = 5 / 10 = 0.5; ||g_c|| / ||w_c|| = 1 / sqrt(0.5) = 1.4142.
  rgn = auto.relative_gradient_norms(GRADS, PARAMS)
  np.testing.assert_allclose(rgn["a"], 0.5, rtol=1e-6)
  np.testing.assert_allclose(rgn["b"]["c"], np.sqrt(2), rtol=1e-6)
  scales = auto.rgn_scales(rgn)
  np.testing.assert_allclose(scales["a"], 0.5 / np.sqrt(2), rtol=1e-6)
  np.testing.assert_allclose(scales["b"]["c"], 1.0, rtol=1e-6)
  tx = auto.auto_rgn(optax.sgd(1.0), period=10)
  updates, state = tx.update(GRADS, tx.init(PARAMS), PARAMS)
  np.testing.assert_allclose(updates["a"], -GRADS["a"] * 0.5 / np.sqrt(2), rtol=1e-6)
  # Outside the measuring window the scales stay fixed, whatever the gradient.
  other = jax.tree_util.tree_map(lambda g: 7 * g[::-1], GRADS)
  _, state2 = tx.update(other, state, PARAMS)
  jax.tree_util.tree_map(np.testing.assert_array_equal, state.scales, state2.scales)


def test_auto_snr_switches_off_noisy_tensors():
  tx = auto.auto_snr(optax.sgd(1.0), period=10, measure_steps=4, threshold=0.5)
  state = tx.init(PARAMS)
  signs = [1.0, -1.0, 1.0, -1.0]  # "b" flips sign every step: mean 0, SNR 0
  for s in signs:
    grads = {"a": GRADS["a"] * (1 + 0.01 * s), "b": {"c": GRADS["b"]["c"] * s}}
    updates, state = tx.update(grads, state, PARAMS)
  assert float(state.scales["a"]) == 1.0 and float(state.scales["b"]["c"]) == 0.0
  np.testing.assert_array_equal(updates["b"]["c"], 0.0)


def test_multitask_objective_is_the_weighted_sum_of_task_losses():
  models = [build_model("mlp", num_outputs=n, hidden=(8,)) for n in (3, 5)]
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 4))
  batches = [(x, jnp.arange(6) % 3), (x + 1, jnp.arange(6) % 5)]
  heads, trunk = [], None
  for i, m in enumerate(models):
    p = m.init(jax.random.PRNGKey(i), x)["params"]
    head, body = partition.split(p, partition.label_params(p, HEAD), bool)
    heads.append(head)
    trunk = trunk or body
  with reference.float64():  # the same sums both ways: equal up to float64 rounding
    trunk, heads = reference.to_float64(trunk), reference.to_float64(heads)
    batches = [(reference.to_float64(xb), yb) for xb, yb in batches]
    total, (losses, _) = multitask_loss(models, trunk, heads, {}, batches, (0.3, 2.0))
    separate = []
    for m, head, (xb, yb) in zip(models, heads, batches):
      logits = m.apply({"params": partition.merge(trunk, head)}, xb)
      separate.append(float(optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()))
    assert np.asarray(total).dtype == np.float64
  np.testing.assert_allclose(losses, separate, rtol=1e-12)
  np.testing.assert_allclose(total, 0.3 * separate[0] + 2.0 * separate[1], rtol=1e-12)
