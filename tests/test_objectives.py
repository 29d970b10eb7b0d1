"""Pre-training objectives (jaxtl.objectives): each one's invariant against a direct NumPy
computation in float64, and each one end to end through the trainer, its checkpoint then
fine-tuned with `init_from` like a supervised one."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import finetune as finetune_configs
from experiments.configs import pretraining as pretraining_configs
from experiments.configs import surgical as surgical_configs
from jaxtl import cache, checkpoint, objectives, workdir as run_dir
from jaxtl.errors import ConfigError
from jaxtl.finetune import trainer
from jaxtl.studies import documents
from jaxtl.studies.surgical import study as surgical
from jaxtl.data import load_dataset
from jaxtl.meta import tasks
from jaxtl.models import build_model
from jaxtl.objectives import augment, mae, rotation, simclr
from jaxtl.studies.pretraining import study, tuning
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
  # masked_denoise hides exactly the masked pixels of its inputs, by zeroing them.
  objective = objectives.make("masked_denoise", {"mask_ratio": 0.5, "patch": 4}, 10, (8, 8, 1))
  inputs, (targets, mask) = objective.prepare(jax.random.PRNGKey(3), x, None)
  np.testing.assert_array_equal(inputs, x * (1 - mask))
  np.testing.assert_array_equal(targets, x)


def _mae_network(model="conv4", shape=(8, 8, 1), **options):
  objective = objectives.make("mae", {"patch": 4, **options}, 10, shape)
  kwargs = {"features": 8} if model == "conv4" else {"widths": (4, 8)}
  net = objectives.network_for(build_model(model, num_classes=objective.num_outputs,
                                           **kwargs), objective)
  variables = net.init(jax.random.PRNGKey(0), jnp.zeros((1,) + shape), train=False)
  return objective, net, variables


def test_mae_encoder_tells_a_hidden_patch_from_a_blank_one():
  """He et al.'s mask token: a blank image with one patch hidden reaches the encoder
  unlike the same blank image with nothing hidden, and so does its first block's output;
  the visible pixels reach it unchanged."""
  _, net, variables = _mae_network()
  blank = jnp.zeros((1, 8, 8, 1))
  mask = jnp.zeros((1, 8, 8, 1)).at[:, :4, :4].set(1.0)
  embed = lambda x: net.apply(variables, x, method=lambda m, x: m.head.embed(x))
  hidden, shown = embed(jnp.concatenate([blank, mask], -1)), embed(blank)
  np.testing.assert_array_equal(shown, blank)
  assert np.all(np.asarray(hidden)[0, :4, :4] != 0)  # the token, not background
  np.testing.assert_array_equal(np.asarray(hidden)[0, 4:], 0)
  images = jnp.asarray(_images((1, 8, 8, 1)))
  np.testing.assert_array_equal(np.asarray(embed(jnp.concatenate([images, mask], -1)))[0, 4:],
                                np.asarray(images)[0, 4:])
  first = lambda x: net.apply(variables, x, train=False, stop=1)
  assert not np.allclose(first(jnp.concatenate([blank, mask], -1)), first(blank))
  # The token is a parameter the loss trains, and it lives under head/ with the decoder.
  assert variables["params"]["head"]["mask_token"].shape == (4, 4, 1)


def test_mae_decodes_from_the_spatial_map_with_depth_and_scores_hidden_patches():
  """The decoder reads the last block's map unpooled (a ResNet pools it for its own
  head), through a dense layer and two transposed convolutions, to the image's shape; its
  loss ignores the visible pixels."""
  objective, net, variables = _mae_network("resnet", (8, 8, 1))
  head = variables["params"]["head"]
  assert set(head) == {"mask_token", "dense", "up1", "up2"}
  feature_map = net.apply(variables, jnp.zeros((1, 8, 8, 1)), train=False, stop=2)
  assert feature_map.shape == (1, 4, 4, 8)
  assert head["dense"]["kernel"].shape[0] == 4 * 4 * 8  # unpooled: every position
  assert head["up1"]["kernel"].shape[:2] == (3, 3) and head["up2"]["kernel"].shape[-1] == 1
  x = jnp.asarray(_images((2, 8, 8, 1)))
  inputs, targets = objective.prepare(jax.random.PRNGKey(1), x, None)
  outputs = net.apply(variables, inputs, train=False)
  assert outputs.shape == x.shape
  _, mask = targets
  moved = outputs + (1 - mask) * 5.0
  assert float(objective.loss(moved, targets)) == float(objective.loss(outputs, targets))
  with pytest.raises(ConfigError, match=r"mae mask_ratio=1.0 must be in \(0, 1\)"):
    objectives.make("mae", {"mask_ratio": 1.0}, 10, (8, 8, 1))


def test_simclr_projection_is_a_nonlinear_mlp_dropped_at_transfer(tmp_path):
  """Chen et al.'s g(h) = W2 relu(W1 h) on the pooled features: not additive in h;
  `projection_hidden=0` is the linear ablation. A fine-tuned model loads the encoder and
  skips the projection."""
  objective = objectives.make("simclr", {"projection_hidden": 16, "projection_dim": 6}, 10,
                              (8, 8, 1))
  head = objective.head()
  h = jnp.asarray(_images((3, 12)))
  params = head.init(jax.random.PRNGKey(0), h)
  g = lambda v: np.asarray(head.apply(params, v), np.float64)
  assert set(params["params"]) == {"hidden", "out"}
  assert not np.allclose(g(h) + g(-h), 2 * g(0 * h), atol=1e-3)  # relu bends it
  linear = objectives.make("simclr", {"projection_hidden": 0}, 10, (8, 8, 1)).head()
  lp = linear.init(jax.random.PRNGKey(0), h)
  gl = lambda v: np.asarray(linear.apply(lp, v), np.float64)
  np.testing.assert_allclose(gl(h) + gl(-h), 2 * gl(0 * h), atol=1e-5)
  source = finetune_configs.get_config("quick_source")
  source.objective, source.num_steps = "simclr", 4
  source.checkpoint_every = source.log_every = 2
  trainer.train_and_evaluate(source, str(tmp_path / "simclr"))
  pretrained = checkpoint.load_variables(str(tmp_path / "simclr"))["params"]
  assert set(pretrained["head"]) == {"hidden", "out"}
  fresh = {"params": {k: v for k, v in pretrained.items() if k != "head"}}
  fresh["params"]["head"] = {"kernel": np.zeros((4, 5)), "bias": np.zeros(5)}
  _, report = checkpoint.load_pretrained(fresh, {"params": pretrained})
  assert sorted(report["skipped"]) == ["params/head/hidden/bias", "params/head/hidden/kernel",
                                       "params/head/out/bias", "params/head/out/kernel"]
  assert not any(p.startswith("params/head") for p in report["loaded"])


def test_random_resized_crop_is_the_identity_on_the_whole_image_and_zooms_a_ramp():
  """Area 1 at aspect 1: every output pixel samples its own centre. Area 1/4 at aspect 1:
  the box has half the side, so a ramp f(r, c) = r comes out with half its slope (bilinear
  interpolation is exact on a linear function)."""
  x = jnp.asarray(_images((3, 12, 12, 2)))
  key = jax.random.PRNGKey(4)
  same = augment.random_resized_crop(key, x, scale=(1.0, 1.0), ratio=(1.0, 1.0))
  np.testing.assert_allclose(same, x, atol=1e-5)
  ramp = jnp.broadcast_to(jnp.arange(12.0)[None, :, None, None], (3, 12, 12, 1))
  zoomed = np.asarray(augment.random_resized_crop(key, ramp, scale=(0.25, 0.25),
                                                  ratio=(1.0, 1.0)))
  steps = np.diff(zoomed[:, 1:-1, 6, 0], axis=1)  # interior rows: no edge clamping
  np.testing.assert_allclose(steps, 0.5, atol=1e-4)
  assert not np.allclose(zoomed[0], zoomed[1])  # each image its own box


def test_grey_jitter_is_brightness_after_contrast_and_the_identity_at_zero_strength():
  """Per image, out = b ((x - m) c + m) with m its mean: affine in x, with brightness b =
  mean(out) / m and contrast c = slope / b, each in 1 +- 0.8 strength."""
  x = jnp.asarray(np.abs(_images((64, 4, 4, 1))) + 0.1)
  key = jax.random.PRNGKey(2)
  np.testing.assert_allclose(augment.grey_jitter(key, x, 0.0), x, rtol=1e-6)
  np.testing.assert_array_equal(augment.grey_jitter(key, x, 0.5, probability=0.0), x)
  out = np.asarray(augment.grey_jitter(key, x, 0.5, probability=1.0), np.float64)
  factors = []
  for o, i in zip(out, np.asarray(x, np.float64)):
    slope, intercept = np.polyfit(i.ravel(), o.ravel(), 1)
    np.testing.assert_allclose(slope * i + intercept, o, atol=1e-5)  # affine
    brightness = o.mean() / i.mean()
    factors += [brightness, slope / brightness]
  assert 0.6 - 1e-4 <= min(factors) and max(factors) <= 1.4 + 1e-4
  assert max(factors) - min(factors) > 0.4  # spread over the range, not one factor


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
                     "rotation, simclr, mae, masked_denoise"):
    objectives.make("simclrr", {}, 10, (8, 8, 1))
  with pytest.raises(ConfigError, match=r"Unknown objective_kwargs \['temprature'\]; valid: "
                     "augment, max_rotate_deg"):
    objectives.make("simclr", {"temprature": 0.1}, 10, (8, 8, 1))
  with pytest.raises(ConfigError, match="masked_only=True with mask_ratio=0"):
    objectives.make("masked_denoise", {"mask_ratio": 0.0, "noise_std": 0.1}, 10, (8, 8, 1))
  with pytest.raises(ConfigError, match=r"crop_scale=\(0.0, 1.0\)"):
    objectives.make("simclr", {"crop_scale": (0.0, 1.0)}, 10, (8, 8, 1))


@pytest.mark.parametrize("name,metric", [("rotation", "test_rotation_accuracy"),
                                         ("simclr", "test_partner_top1"),
                                         ("mae", "test_mse"),
                                         ("masked_denoise", "test_mse")])
def test_each_objective_pretrains_and_its_checkpoint_fine_tunes(name, metric, tmp_path):
  source = finetune_configs.get_config("quick_source")
  source.objective = name
  if name == "simclr":
    source.objective_kwargs.temperature = 0.2
  metrics = trainer.train_and_evaluate(source, str(tmp_path / name))
  assert np.isfinite(metrics[metric if name != "rotation" else "test_loss"])
  assert metric in metrics
  head = checkpoint.load_variables(str(tmp_path / name))["params"]["head"]
  expected = {"rotation": {"kernel", "bias"}, "simclr": {"hidden", "out"},
              "mae": {"mask_token", "dense", "up1", "up2"},
              "masked_denoise": {"kernel", "bias"}}[name]
  assert set(head) == expected
  if "kernel" in head:  # the model's own head is the output layer: 4 rotations, 64 pixels
    assert head["kernel"].shape[-1] == {"rotation": 4, "masked_denoise": 64}[name]
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


def _assert_tuned_setting_recorded(workdir, run: str):
  """The setting tuning picked (the quick grids' one learning rate, 2e-3, not the
  default 1e-3) is in results.json and in the config of the run pre-trained with it."""
  with open(workdir / "results.json") as f:
    tuned = json.load(f)["metrics"]["tuning"]["rotation"]
  assert tuned["pick"] == {"learning_rate": 2e-3} and tuned["on_edge"] == []
  assert set(tuned["scores"]) == {"learning_rate0.002"}
  assert run_dir.load_config(str(workdir / "pretrain" / run)).learning_rate == 2e-3


def test_ncm_proxy_matches_a_hand_computed_case():
  """Class means from each class's first half, its second half scored: the point of
  class 1 nearer class 0's mean is the one error of four."""
  feats = np.array([[0.0, 0.0], [0.0, 0.2], [4.0, 0.0], [0.5, 0.0],   # class 0, 0, 1, 1
                    [0.0, 0.4], [0.1, 0.0], [4.0, 0.2], [4.2, 0.0]])
  labels = np.array([0, 0, 1, 1, 0, 0, 1, 1])
  # Means: class 0 from images 0, 1; class 1 from 2, 3 (its mean 2.25, 0).
  assert tuning.ncm_accuracy(feats, labels) == 1.0
  feats[6] = [1.0, 0.0]  # now nearer class 0's mean (0, 0.1) than class 1's (2.25, 0)
  assert tuning.ncm_accuracy(feats, labels) == 0.75


def test_tuning_widens_past_an_edge_pick_within_its_limits_and_ignores_unordered_ones():
  grid = {"learning_rate": (3e-4, 1e-3, 3e-3), "augment": (False, True),
          "mask_ratio": (0.5, 0.75, 0.9)}
  limits = {"mask_ratio": (0.05, 0.95)}
  pick = {"learning_rate": 3e-3, "augment": True, "mask_ratio": 0.9}
  assert tuning.on_edge(grid, pick, limits) == ["learning_rate", "mask_ratio"]
  wider = tuning.widen(grid, pick, ["learning_rate", "mask_ratio"], limits)
  assert wider["learning_rate"] == (3e-4, 1e-3, 3e-3, 9e-3)  # x3, the grid's own step
  assert wider["mask_ratio"] == (0.5, 0.75, 0.9, 0.95)  # 0.9 x 1.2 clipped to its limit
  assert wider["augment"] == (False, True)
  # At its limit a pick is where it must be, not under-tuned.
  assert tuning.on_edge(wider, dict(pick, learning_rate=1e-3, mask_ratio=0.95), limits) == []
  lower = tuning.widen(grid, dict(pick, learning_rate=3e-4), ["learning_rate"], limits)
  assert lower["learning_rate"][0] == 9e-5


def test_tuning_widens_past_the_confirmed_pick_when_it_sits_on_an_edge():
  """The short runs prefer an inside learning rate, the study's length the grid's lowest:
  the pick that transfer uses is on the edge, so the grid widens below it, and the new
  value, best at full length, is picked (the 91b67a6 rerun checked the short runs' best
  only, and SimCLR's pick sat in a corner unflagged)."""
  def score(setting, steps):
    lr = np.log10(setting["learning_rate"])
    peak = -3.0 if steps == 10 else -4.8  # longer runs want a smaller rate
    return 0.9 - 0.01 * abs(lr - peak)

  picked = tuning.select({"learning_rate": (1e-4, 1e-3, 1e-2)}, {}, score, 10, 100,
                         confirm=2, times=2, what="fake")
  assert picked["pick"]["learning_rate"] == pytest.approx(1e-5) and picked["on_edge"] == []
  # Widened twice: below 1e-4 (the first pick), then below 1e-5 (the next), each new
  # value confirmed at full length though the short runs rank it low.
  assert picked["grid"]["learning_rate"] == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3, 1e-2])
  assert set(picked["confirmed"]) == {f"learning_rate{v:g}" for v in (1e-6, 1e-5, 1e-4, 1e-3)}
  stuck = tuning.select({"learning_rate": (1e-4, 1e-3, 1e-2)}, {}, score, 10, 100,
                        confirm=2, times=0, what="fake")
  assert stuck["pick"]["learning_rate"] == 1e-4 and stuck["on_edge"] == ["learning_rate"]


def test_a_candidate_confirmed_in_an_earlier_round_stays_in_the_running():
  """The short runs lean past the grid's top, the study's length prefers 1e-2: confirmed
  in the first round, 1e-2 must stay the pick after the grid widens to 1e-1 and 1, though
  later rounds confirm only 1e-1 (the rerun at 8530b0f dropped such a candidate: MAE's
  learning rate 3e-3, 86.16 at full length, lost to 85.96)."""
  short = lambda lr: -abs(np.log10(lr) + 1)
  full = lambda lr: -abs(np.log10(lr) + 2)
  score = lambda s, steps: (short if steps == 10 else full)(s["learning_rate"])
  picked = tuning.select({"learning_rate": (1e-4, 1e-3, 1e-2)}, {}, score, 10, 100,
                         confirm=1, times=2, what="fake")
  assert picked["grid"]["learning_rate"] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
  assert picked["pick"]["learning_rate"] == pytest.approx(1e-2) and picked["on_edge"] == []
  assert set(picked["confirmed"]) == {"learning_rate0.01", "learning_rate0.1"}


def test_tuning_scores_images_outside_a_drawn_source(data_dir):
  """A study that pre-trains on a draw tunes on a draw like its most diverse one, whole,
  and scores images outside it: the digits' other training images, `holdout` a class;
  on Omniglot, every drawing of `holdout_characters` characters the draw does not have."""
  config = pretraining_configs.get_config("digits_quick")
  config.data_dir = data_dir
  train, held_out = study.tuning_sets(config)
  assert len(train) == config.num_images
  assert np.bincount(held_out.labels).tolist() == [config.tune.holdout] * 10
  flat = lambda d: {x.tobytes() for x in d.images.reshape(len(d), -1)}
  assert not flat(train) & flat(held_out)
  config = pretraining_configs.get_config("quick")
  config.data_dir = data_dir
  train, held_out = study.tuning_sets(config)
  assert len(np.unique(train.labels)) == config.num_characters
  assert np.bincount(held_out.labels).tolist() == [20] * config.tune.holdout_characters
  assert not flat(train) & flat(held_out)
  config.tune.holdout_characters = 1
  with pytest.raises(ConfigError, match="tune.holdout_characters=1; valid: 2 to"):
    study.tuning_sets(config)


def test_tuning_runs_train_only_on_their_own_classes(data_dir, tmp_path, monkeypatch):
  """A tuning run's sets hold only its training classes (a supervised head sized by the
  held-out characters would train another network than the study's); the held-out
  images reach the candidates through nearest class means alone."""
  config = pretraining_configs.get_config("quick")
  config.data_dir, config.objectives = data_dir, ("scratch", "supervised")
  train, held_out = study.tuning_sets(config)
  seen = []

  def capture(cfg, folder, data):
    seen.append(data)
    raise RuntimeError("captured")
  monkeypatch.setattr(tuning.trainer, "train_and_evaluate", capture)
  with pytest.raises(RuntimeError, match="captured"):
    tuning.tune(config, str(tmp_path), train, held_out, {"test": 1})
  classes = set(np.unique(seen[0][0].labels))
  assert all(set(np.unique(d.labels)) <= classes for d in seen[0][1:]), seen[0]
  assert not set(np.unique(held_out.labels)) <= classes  # new characters, relabelled


def test_a_tuned_pick_on_a_grid_edge_fails_naming_it(data_dir, tmp_path):
  config = pretraining_configs.get_config("digits_quick")
  config.data_dir = data_dir
  config.tune.grids = {"rotation": {"learning_rate": (1e-3, 2e-3)}}  # any pick is an edge
  sets = study.tuning_sets(config)
  key = {"test": 1}
  config.tune.widen = 0
  with pytest.raises(ConfigError, match=r"Tuning picked a grid edge: \{'rotation': "
                                        r"\['learning_rate'\]\}.*widen those grids"):
    tuning.tune(config, str(tmp_path), *sets, key)
  # Widened once: one value past the edge pick; the two first candidates' cells reused.
  config.tune.fail_on_edge, config.tune.widen = False, 1
  picks = tuning.tune(config, str(tmp_path), *sets, key)
  assert len(picks["rotation"]["grid"]["learning_rate"]) == 3
  assert len(os.listdir(tmp_path / "cells")) == 3 and picks["rotation"]["confirmed"] == {}
  # Short candidates, then the best 2 again at the study's length, which pick.
  config.tune.steps, config.tune.confirm = 2, 2
  picks = tuning.tune(config, str(tmp_path), *sets, key)["rotation"]
  confirmed = picks["confirmed"]
  assert len(confirmed) >= 2 and set(confirmed) <= set(picks["scores"])  # every round's
  assert tuning.setting_label(picks["pick"]) == max(confirmed, key=confirmed.get)
  assert any(n.endswith(f"_{config.pretrain.num_steps}steps.json")
             for n in os.listdir(tmp_path / "cells"))
  with pytest.raises(ConfigError, match="tune setting 'temprature' is neither"):
    tuning.apply_setting(config.pretrain.copy_and_resolve_references(), {"temprature": 1})


def test_pretraining_study_quick_resumes_with_its_cells(data_dir, tmp_path):
  """The Omniglot study end to end on its quick variant: a pre-training set of a fixed
  size from k alphabets, each objective's network scored on evaluation-alphabet tasks."""
  config = pretraining_configs.get_config("quick")
  config.data_dir = data_dir
  one = study.pretraining_images(config, 1, 0)
  three = study.pretraining_images(config, 3, 0)
  np.testing.assert_array_equal(one.images, study.pretraining_images(config, 1, 0).images)
  # Every drawing of 3 characters, from 1 alphabet or from 3: the same classes and images
  # per class at every diversity.
  for drawn, alphabets in ((one, 1), (three, 3)):
    assert len(drawn) == 3 * 20 and drawn.num_classes == 3
    assert np.all(np.bincount(drawn.labels) == 20)
  # No pre-training set holds a character of the few-shot validation alphabets.
  source, _ = study._source(config)  # pylint: disable=protected-access
  background = load_dataset("omniglot", "background", data_dir=data_dir)
  val = tasks.omniglot_class_splits(background, "lake", config.fewshot.tasks.split_seed, 0,
                                    config.fewshot.tasks.num_val_alphabets)["val"]
  assert len(val) and not np.isin(source.labels, val).any()
  assert len(source) + 20 * len(val) == len(background)
  table = study.study(config, str(tmp_path))
  assert set(table) == {"scratch", "rotation"}
  for objective in table.values():
    assert set(objective) == {"1", "3"}
    for cell in objective["1"].values():
      assert 0 <= cell["accuracy"] <= 1 and cell["seeds"] == 1
  assert os.path.isdir(tmp_path / "pretrain" / "rotation_3alphabets_seed0")
  _assert_tuned_setting_recorded(tmp_path, "rotation_3alphabets_seed0")
  config.objectives = ("scratch", "ceiling")
  with pytest.raises(ConfigError, match="'ceiling' needs a target with a training set"):
    study.study(config, str(tmp_path))
  config.objectives = ("scratch", "rotation")
  assert not any(name.startswith("scratch") for name in os.listdir(tmp_path / "pretrain"))
  assert "| rotation |" in (tmp_path / "results.md").read_text()
  assert (tmp_path / "results.png").exists()  # accuracy against alphabets
  # A rerun reads the cells: nothing is pre-trained or scored again.
  (tmp_path / "pretrain" / "rotation_3alphabets_seed0" / "results.json").unlink()
  assert study.study(config, str(tmp_path)) == table
  with pytest.raises(ConfigError, match=r"1 alphabets with 100 characters each: only 0 of"):
    config.num_characters = 100  # the largest background alphabet has 55
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
  assert set(table) == {"scratch", "ceiling", "rotation"}
  _assert_tuned_setting_recorded(tmp_path, "rotation_2classes_seed0")
  assert os.path.isdir(tmp_path / "pretrain" / "ceiling_usps_seed0")  # USPS's own labels
  # The ceiling is supervised pre-training with supervised's pick, though no supervised
  # row runs here.
  assert run_dir.load_config(str(tmp_path / "pretrain" / "ceiling_usps_seed0")).learning_rate == 2e-3
  for objective in table.values():
    assert set(objective) == {"1", "2"}
    for cells in objective.values():
      assert set(cells) == {"linear_probe_usps20", "lp_ft_usps20"}
      assert all(0 <= c["accuracy"] <= 1 and c["ci95"] > 0 for c in cells.values())
  # No pre-training and the ceiling do not depend on the pre-training set: one cell each
  # serves every diversity (the most diverse one's name), not one run per diversity.
  for row in ("scratch", "ceiling"):
    assert table[row]["1"] == table[row]["2"]
    stored = sorted(n for n in os.listdir(tmp_path / "cells") if n.startswith(row))
    assert stored == [f"{row}_2c_s0_linear_probe_usps20.json",
                      f"{row}_2c_s0_lp_ft_usps20.json"], stored
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


def test_pretraining_ends_with_the_batch_statistics_of_clean_images(tmp_path):
  """`clean_batch_stats`: the saved running statistics are those of the first N clean
  training images, so running-statistics mode on them computes what batch-statistics
  mode does (float32 rounding of the statistics aside), though training saw masked ones."""
  source = finetune_configs.get_config("quick_source")
  source.objective, source.clean_batch_stats = "mae", 50
  metrics = trainer.train_and_evaluate(source, str(tmp_path / "mae"))
  assert metrics["clean_batch_stats"] == 50
  train, _, _ = trainer.make_splits(source)
  saved = checkpoint.load_variables(str(tmp_path / "mae"))
  body = {"params": {k: v for k, v in saved["params"].items() if k != "head"},
          "batch_stats": saved["batch_stats"]}
  model = build_model(source.model, num_classes=1, **dict(source.model_kwargs))
  last = len(model.block_names()) - 1
  x = jnp.asarray(train.images[:50])
  running = model.apply(body, x, train=False, stop=last)
  batch, _ = model.apply(body, x, train=True, stop=last, mutable=["batch_stats"])
  scale = float(jnp.max(jnp.abs(batch)))
  np.testing.assert_allclose(running, batch, atol=1e-4 * scale)


def test_scratch_bn_is_scratchs_network_normalised_by_clean_source_images(data_dir, tmp_path):
  """The second floor (issue 30's reviews): no step of training, so its body is the very
  network `scratch`'s target runs initialise (the same seed and shapes), bit for bit; only
  its batch-norm statistics differ, those of clean images of the most diverse draw, as
  every pre-trained network's are."""
  config = pretraining_configs.get_config("digits_quick")
  config.data_dir = data_dir
  config.pretrain.clean_batch_stats = 40
  folder = study.pretrain(config, str(tmp_path), "scratch_bn", 1, 3, {}, "usps")
  assert folder.endswith(f"scratch_bn_{max(config.diversity)}classes_seed3")
  assert json.load(open(os.path.join(folder, "results.json")))["metrics"]["steps"] == 0
  saved = checkpoint.load_variables(folder)
  target = build_model(config.pretrain.model, num_classes=10, **dict(config.pretrain.model_kwargs))
  images = study.pretraining_images(config, max(config.diversity), 3)
  init_key, _ = jax.random.split(jax.random.PRNGKey(3))  # as the trainer splits its seed
  initial = target.init(init_key, jnp.asarray(images.images[:1]), train=False)
  body = lambda tree: {k: v for k, v in tree.items() if k != "head"}
  jax.tree_util.tree_map(np.testing.assert_array_equal, body(saved["params"]),
                         body(initial["params"]))
  # Running statistics on the 40 clean images compute what batch statistics do.
  variables = {"params": body(saved["params"]), "batch_stats": saved["batch_stats"]}
  last = len(target.block_names()) - 1
  x = jnp.asarray(images.images[:40])
  running = target.apply(variables, x, train=False, stop=last)
  batch, _ = target.apply(variables, x, train=True, stop=last, mutable=["batch_stats"])
  np.testing.assert_allclose(running, batch, atol=1e-4 * float(jnp.max(jnp.abs(batch))))
  initial_stats = jax.tree_util.tree_leaves(initial["batch_stats"])
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree_util.tree_leaves(saved["batch_stats"]), initial_stats))


def test_balanced_draws_cover_the_classes_evenly_over_the_seeds(data_dir):
  """`draw="balanced"`: the seeds of a level take consecutive blocks of one shuffled order
  of the classes, so 5 seeds at 1 class see 5 classes and at 2 classes all 10, once."""
  config = pretraining_configs.get_config("digits_quick")
  config.data_dir, config.draw = data_dir, "balanced"

  def classes(groups, seed):
    data, index = study._draw(config, groups, seed)  # pylint: disable=protected-access
    return set(np.unique(data.labels[index]).tolist())
  singles = [classes(1, seed) for seed in range(5)]
  assert all(len(c) == 1 for c in singles) and len(set().union(*singles)) == 5
  pairs = [classes(2, seed) for seed in range(5)]
  assert all(len(c) == 2 for c in pairs) and set().union(*pairs) == set(range(10))
  assert classes(2, 5) == pairs[0]  # round again
  config.draw = "stratified"
  with pytest.raises(ConfigError, match="draw='stratified'; valid: random, balanced"):
    study.pretraining_images(config, 1, 0)


def test_the_untrained_proxy_scores_the_initialisation_every_candidate_starts_from(
    data_dir, tmp_path):
  """The level the tuning table's scores are read against (issue 30): the proxy of the
  study's network before any step, initialised from `data_seed` as every candidate is."""
  config = pretraining_configs.get_config("digits_quick")
  config.data_dir, config.pretrain.clean_batch_stats = data_dir, 0  # initial statistics
  train, held_out = study.tuning_sets(config)
  score = tuning.untrained(config, str(tmp_path), train, held_out, {"test": 1})
  assert os.listdir(tmp_path / "cells") == ["tune_supervised_0steps.json"]
  model = build_model(config.pretrain.model, num_classes=1, **dict(config.pretrain.model_kwargs))
  init_key, _ = jax.random.split(jax.random.PRNGKey(config.data_seed))  # as the trainer does
  initial = model.init(init_key, jnp.asarray(train.images[:1]), train=False)
  body = {"params": {k: v for k, v in initial["params"].items() if k != "head"},
          "batch_stats": initial["batch_stats"]}
  assert score == tuning.ncm_accuracy(tuning.features(model, body, held_out.images),
                                      held_out.labels)
  assert tuning.untrained(config, str(tmp_path), train, held_out, {"test": 1}) == score


def test_a_target_cell_tunes_its_learning_rate_on_held_out_target_images(data_dir,
                                                                         tmp_path,
                                                                         monkeypatch):
  """Issue 30's review: the transfer step had one fixed rate, so LP-FT could fall below
  the probe it starts from. Each cell now tunes it on `target_val` training images apart
  from the labelled draw, and reports the pick's test accuracy."""
  config = pretraining_configs.get_config("digits_quick")
  config.data_dir, config.target_lr_grid = data_dir, (1e-3, 1e-2, 1e-1)
  seen = []

  def fake(cfg, workdir, data):
    train, val, _ = data
    os.makedirs(workdir)
    seen.append((len(train), len(val)))
    peak = -abs(np.log10(cfg.learning_rate) - np.log10(3e-4))  # best at 3e-4
    return {"val_accuracy": 0.9 + 0.01 * peak, "test_accuracy": 0.8 + 0.01 * peak}

  monkeypatch.setattr(trainer, "train_and_evaluate", fake)
  cell = study.target_cell(config, str(tmp_path), "k", "", "usps", 20, "lp_ft", 0)
  assert cell["learning_rate"] == pytest.approx(3.16e-4) and not cell["on_edge"]
  assert cell["accuracy"] == pytest.approx(0.8 - 0.01 * (np.log10(3.16e-4) - np.log10(3e-4)))
  assert min(float(v) for v in cell["val_accuracy"]) == pytest.approx(1e-5)  # widened twice
  assert all(n == 20 and v == config.target_val for n, v in seen)


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_the_fine_tuned_ends_share_the_diversity_studys_cells(dataset):
  """`VARIANT_lpft` differs from its diversity study only in fields the cells' keys leave
  out (`study.ENUMERATING`), so in a copy of that study's workdir it reuses its networks
  and cells and adds the LP-FT ones."""
  base = pretraining_configs.get_config(f"{dataset}_diversity")
  ends = pretraining_configs.get_config(f"{dataset}_diversity_lpft")
  assert ends.diversity == (1, 10) and ends.strategies == ("linear_probe", "lp_ft")
  assert (cache.config_key(ends, study.ENUMERATING)
          == cache.config_key(base, study.ENUMERATING))
  assert ends.to_dict() != base.to_dict()


def test_omniglots_fine_tuned_ends_reuse_the_diversity_studys_networks():
  """`diversity_finetune` fine-tunes on each few-shot task at 1 and 14 alphabets: new cells
  (the baselines are in their key), on the same networks (their config and the tuning's
  are the study's)."""
  base = pretraining_configs.get_config("diversity")
  ends = pretraining_configs.get_config("diversity_finetune")
  assert ends.diversity == (1, 14) and ends.baselines == ("finetune",)
  assert ends.pretrain.to_dict() == base.pretrain.to_dict()
  assert ends.tune.to_dict() == base.tune.to_dict()
  assert (cache.config_key(ends, study.ENUMERATING + ("baselines",))
          == cache.config_key(base, study.ENUMERATING + ("baselines",)))
