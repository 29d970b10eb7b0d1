import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxtl import partition
from jaxtl.data.shifts import CORRUPTIONS, corrupt, make_shift
from jaxtl.finetune import auto
from jaxtl.finetune.multitask import HEAD, multitask_loss
from jaxtl.models import build_model
from tests import reference


@pytest.mark.parametrize("shift", ["input", "feature", "output"])
def test_shifts_are_deterministic(shift):
  a, b = make_shift(shift, "digits", seed=3), make_shift(shift, "digits", seed=3)
  for part in ("source_train", "target_train", "target_test"):
    np.testing.assert_array_equal(getattr(a, part).images, getattr(b, part).images)
    np.testing.assert_array_equal(getattr(a, part).labels, getattr(b, part).labels)


def test_input_shift_changes_images_not_labels():
  t = make_shift("input", "digits", corruption="impulse_noise", severity=3)
  np.testing.assert_array_equal(t.source_train.labels, t.target_train.labels)
  assert not np.array_equal(t.source_train.images, t.target_train.images)


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


def test_feature_shift_on_omniglot_keeps_alphabets_as_classes(data_dir):
  t = make_shift("feature", "omniglot", data_dir=data_dir, omniglot_alphabets=5)
  assert t.num_classes == 5 and set(t.target_test.labels) == set(range(5))


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corruptions(corruption):
  x = make_shift("input", "digits").source_train.images[:64]
  out = corrupt(x, corruption, 5, seed=1)
  assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
  np.testing.assert_array_equal(out, corrupt(x, corruption, 5, seed=1))
  assert not np.allclose(out, x)
  if corruption in ("gaussian_noise", "impulse_noise", "contrast", "fog"):
    mild = np.abs(corrupt(x, corruption, 1, seed=1) - x).mean()
    assert mild < np.abs(out - x).mean()


def test_bad_shift_names():
  with pytest.raises(ValueError, match="valid shifts"):
    make_shift("label", "digits")
  with pytest.raises(ValueError, match="valid"):
    corrupt(np.zeros((1, 2, 2, 1)), "snow", 1, 0)


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
