"""Pre-training objectives (jaxtl.objectives): each one's invariant against a direct NumPy
computation in float64, and each one end to end through the trainer, its checkpoint then
fine-tuned with `init_from` like a supervised one."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import finetune as finetune_configs
from experiments.configs import pretraining as pretraining_configs
from experiments.configs import surgical as surgical_configs
from jaxtl import checkpoint, objectives
from jaxtl.errors import ConfigError
from jaxtl.finetune import trainer
from jaxtl.studies import documents
from jaxtl.studies.surgical import study as surgical
from jaxtl.objectives import augment, mae, rotation, simclr
from jaxtl.studies.pretraining import study
from tests.reference import float64


def _images(shape=(3, 8, 8, 1), seed=0):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_rotation_labels_name_the_rotation_each_image_had():
  x = _images((3, 6, 6, 2))
  rotated, labels = rotation.rotate_all(jnp.asarray(x))
  assert rotated.shape == (12, 6, 6, 2) and labels.shape == (12,)
  for j in range(12):
    k, i = int(labels[j]), j % 3
    np.testing.assert_array_equal(rotated[j], np.rot90(x[i], k, axes=(0, 1)))
  assert list(np.asarray(labels)) == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
  with pytest.raises(ConfigError, match=r"square images; got \(6, 8\)"):
    objectives.make("rotation", {}, 10, (6, 8, 1))


def _nt_xent_numpy(z1, z2, temperature):
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n, total = len(z), 0.0
  for i in range(n):
    partner = (i + n // 2) % n
    others = [j for j in range(n) if j != i]
    logits = np.array([z[i] @ z[j] / temperature for j in others])
    total += np.log(np.exp(logits).sum()) - z[i] @ z[partner] / temperature
  return total / n


def test_nt_xent_matches_numpy_and_identical_views_minimise_it():
  """Its global minimum: each pair's views identical, the pairs a regular simplex
  (cosine -1 / (B - 1) between pairs); any perturbation of the second views costs."""
  rng = np.random.default_rng(1)
  batch, temperature = 5, 0.5
  z1, z2 = rng.normal(size=(batch, 4)), rng.normal(size=(batch, 4))
  simplex = np.eye(batch) - 1.0 / batch
  loss = lambda a, b: float(simclr.nt_xent(jnp.asarray(a), jnp.asarray(b), temperature))
  with float64():
    got = loss(z1, z2)
    best = loss(simplex, simplex)
    perturbed = [loss(simplex, simplex + 0.1 * rng.normal(size=simplex.shape))
                 for _ in range(20)]
  np.testing.assert_allclose(got, _nt_xent_numpy(z1, z2, temperature), rtol=1e-12)
  negative = -1.0 / (batch - 1)  # the simplex's cosine between different pairs
  closed_form = (np.log(np.exp(1 / temperature) + (2 * batch - 2) *
                        np.exp(negative / temperature)) - 1 / temperature)
  np.testing.assert_allclose(best, closed_form, rtol=1e-12)
  assert best < min(perturbed) and best < got


def test_masked_loss_ignores_unmasked_pixels_when_configured_to():
  x = jnp.asarray(_images((4, 8, 8, 1)))
  mask = mae.patch_mask(jax.random.PRNGKey(0), x.shape, patch=4, ratio=0.5)
  assert 0 < float(mask.mean()) < 1 and set(np.unique(mask)) == {0.0, 1.0}
  outputs = jnp.asarray(_images((4, 64), seed=2))
  changed = outputs + (1 - mask).reshape(4, 64) * 3.0  # only the visible pixels move
  masked = lambda o: float(mae.reconstruction_loss(o, x, mask, masked_only=True))
  everywhere = lambda o: float(mae.reconstruction_loss(o, x, mask, masked_only=False))
  assert masked(changed) == masked(outputs)
  assert everywhere(changed) != everywhere(outputs)
  expected = np.sum((np.asarray(outputs).reshape(x.shape) - x) ** 2 * mask) / np.sum(mask)
  np.testing.assert_allclose(masked(outputs), expected, rtol=1e-5)
  # The objective hides exactly the masked pixels of its inputs.
  objective = objectives.make("mae", {"mask_ratio": 0.5, "patch": 4}, 10, (8, 8, 1))
  inputs, (targets, mask) = objective.prepare(jax.random.PRNGKey(3), x, None)
  np.testing.assert_array_equal(inputs, x * (1 - mask))
  np.testing.assert_array_equal(targets, x)


def test_augmentations_are_seeded_and_the_identity_at_zero_strength():
  x = jnp.asarray(_images((4, 8, 8, 2)))
  key = jax.random.PRNGKey(0)
  np.testing.assert_array_equal(augment.augment(key, x), augment.augment(key, x))
  assert not np.allclose(augment.augment(key, x), augment.augment(jax.random.PRNGKey(1), x))
  identity = augment.augment(key, x, max_rotate_deg=0.0, scale=(1.0, 1.0), max_translate=0.0,
                             pixel_noise=0.0)
  np.testing.assert_allclose(identity, x, atol=1e-5)


def test_unknown_objective_and_argument_are_one_line_errors():
  with pytest.raises(ConfigError, match="Unknown objective 'simclrr'; valid: supervised, "
                     "rotation, simclr, mae"):
    objectives.make("simclrr", {}, 10, (8, 8, 1))
  with pytest.raises(ConfigError, match=r"Unknown objective_kwargs \['temprature'\]; valid: "
                     "augment, max_rotate_deg"):
    objectives.make("simclr", {"temprature": 0.1}, 10, (8, 8, 1))
  with pytest.raises(ConfigError, match="masked_only=True with mask_ratio=0"):
    objectives.make("mae", {"mask_ratio": 0.0, "noise_std": 0.1}, 10, (8, 8, 1))


@pytest.mark.parametrize("name,metric", [("rotation", "test_rotation_accuracy"),
                                         ("simclr", "test_partner_top1"),
                                         ("mae", "test_mse")])
def test_each_objective_pretrains_and_its_checkpoint_fine_tunes(name, metric, tmp_path):
  source = finetune_configs.get_config("quick_source")
  source.objective = name
  if name == "simclr":
    source.objective_kwargs.temperature = 0.2
  metrics = trainer.train_and_evaluate(source, str(tmp_path / name))
  assert np.isfinite(metrics["test_loss" if name != "mae" else "test_mse"])
  assert metric in metrics
  head = checkpoint.load_variables(str(tmp_path / name))["params"]["head"]["kernel"]
  expected = {"rotation": 4, "simclr": 64, "mae": 64}[name]  # 8x8x1 digits: 64 pixels
  assert head.shape[-1] == expected
  target = finetune_configs.get_config("quick")
  target.init_from = str(tmp_path / name)
  tuned = trainer.train_and_evaluate(target, str(tmp_path / "tuned"))
  assert 0 <= tuned["test_accuracy"] <= 1


def test_surgical_study_fine_tunes_a_self_supervised_source(tmp_path):
  """`--config.pretrain.objective` in the surgical / LP-FT study: the source is pre-trained
  without labels in its own folder, and every strategy starts from a new head."""
  config = surgical_configs.get_config("quick")
  config.pretrain.objective = "rotation"
  (spec,) = config.shifts
  results = surgical.study(config, str(tmp_path))[spec]
  folders = sorted(os.listdir(tmp_path / "pretrain"))  # one per pre-training seed
  assert folders == [f"digits_clean_pool400_rotation_seed{p}" for p in config.pretrain_seeds]
  assert results["source_test_accuracy"] is None  # no classifier was pre-trained
  assert all(0 <= row["test_accuracy"] <= 1 for row in results["strategies"].values())
  assert "head" in results["strategies"]["block1"]["changed_blocks"]  # re-initialised


def test_pretraining_study_quick_resumes_with_its_cells(data_dir, tmp_path):
  """The Omniglot study end to end on its quick variant: a pre-training set of a fixed
  size from k alphabets, each objective's network scored on evaluation-alphabet tasks."""
  config = pretraining_configs.get_config("quick")
  config.data_dir = data_dir
  one = study.pretraining_images(config, 1, 0)
  again = study.pretraining_images(config, 1, 0)
  assert len(one) == config.num_images and one.num_classes <= 55  # one alphabet's characters
  np.testing.assert_array_equal(one.images, again.images)  # seeded
  table = study.study(config, str(tmp_path))
  assert set(table) == {"scratch", "rotation"}
  for objective in table.values():
    assert set(objective) == {"1", "3"}
    for cell in objective["1"].values():
      assert 0 <= cell["accuracy"] <= 1 and cell["seeds"] == 1
  assert os.path.isdir(tmp_path / "pretrain" / "rotation_3alphabets_seed0")
  assert not any(name.startswith("scratch") for name in os.listdir(tmp_path / "pretrain"))
  assert "| rotation |" in (tmp_path / "results.md").read_text()
  assert (tmp_path / "results.png").exists()  # accuracy against alphabets
  # A rerun reads the cells: nothing is pre-trained or scored again.
  (tmp_path / "pretrain" / "rotation_3alphabets_seed0" / "results.json").unlink()
  assert study.study(config, str(tmp_path)) == table
  with pytest.raises(ConfigError, match=r"num_images=100000 exceeds the \d+ images"):
    config.num_images = 100000
    study.pretraining_images(config, 1, 0)


def test_digits_pretraining_study_quick_resumes_with_its_cells(data_dir, tmp_path):
  """The MNIST arm end to end on its quick variant: pre-training images from k classes,
  each network transferred to USPS from a few labels by a linear probe and by LP-FT."""
  config = pretraining_configs.get_config("digits_quick")
  config.data_dir = data_dir
  two = study.pretraining_images(config, 2, 0)
  assert len(two) == config.num_images and two.num_classes == 2
  np.testing.assert_array_equal(two.images, study.pretraining_images(config, 2, 0).images)
  table = study.study(config, str(tmp_path))
  assert set(table) == {"scratch", "rotation"}
  for objective in table.values():
    assert set(objective) == {"1", "2"}
    for cells in objective.values():
      assert set(cells) == {"linear_probe_usps20", "lp_ft_usps20"}
      assert all(0 <= c["accuracy"] <= 1 and c["ci95"] > 0 for c in cells.values())
  # No pre-training does not depend on the pre-training set: the same seed, the same run.
  assert table["scratch"]["1"] == table["scratch"]["2"]
  assert os.path.isdir(tmp_path / "pretrain" / "rotation_2classes_seed0")
  assert os.listdir(tmp_path / "target_runs") == []  # the cells keep the numbers
  text = (tmp_path / "results.md").read_text()
  assert "LP-FT, USPS, 20 labels" in text and "| rotation |" in text
  with open(documents.write_report(str(tmp_path), str(tmp_path / "report"))) as f:
    assert "## Pre-training study: " in f.read()  # its table and plot in the report
  (tmp_path / "pretrain" / "rotation_2classes_seed0" / "results.json").unlink()
  assert study.study(config, str(tmp_path)) == table
  config.diversity = (11,)
  with pytest.raises(ConfigError, match=r"diversity \[11\]: each must be a number of "
                                        r"classes in 1..10"):
    study.study(config, str(tmp_path))
  config.dataset = "cifar10"
  with pytest.raises(ConfigError, match="Unknown pre-training dataset 'cifar10'"):
    study.study(config, str(tmp_path))
