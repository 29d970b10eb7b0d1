import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import finetune as finetune_configs
from jaxtl import checkpoint, partition, workdir as run_dir
from jaxtl.finetune import strategies, trainer
from jaxtl.models import build_model

BLOCKS = ("block1", "block2", "block3", "head")


def _config(**overrides):
  c = finetune_configs.get_config("quick")
  c.update(overrides)
  return c


def _setup(strategy="surgical", optimizer="adamw", **overrides):
  config = _config(strategy=strategy, optimizer=optimizer, learning_rate=0.1,
                   weight_decay=1e-4, **overrides)
  model = build_model("resnet", num_classes=3, widths=(4, 8, 8))
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 8, 8, 1))
  y = jnp.arange(16) % 3
  variables = model.init(jax.random.PRNGKey(1), x[:1], train=False)
  phase = strategies.phases(config, model.block_names())[0]
  labels = partition.label_params(variables["params"], phase.table)
  trainable, _ = partition.split(labels, labels, lambda l: l is not None)
  tx = trainer.make_optimizer(config, trainable)
  step = trainer.make_train_step(model, tx, labels, config, 8, 16)
  t_params, _ = partition.split(variables["params"], labels, lambda l: l is not None)
  state = dict(step=jnp.zeros((), jnp.int32), params=variables["params"],
               batch_stats=variables["batch_stats"], opt_state=tx.init(t_params))
  return model, variables, labels, tx, step, state, (x, y)


def test_frozen_leaves_bit_identical_and_trained_leaves_move():
  # adamw: decoupled weight decay must not touch frozen leaves either.
  _, variables, labels, _, step, state, (x, y) = _setup(blocks=("block2",))
  before = jax.tree_util.tree_map(np.array, variables["params"])
  for _ in range(3):
    state, _ = step(state, {}, x, y, trainer.epoch_order(jax.random.PRNGKey(0), 0, 16))
  flat_before, flat_after = partition.flatten(before), partition.flatten(state["params"])
  flat_labels = partition.flatten(labels)
  for path, value in flat_before.items():
    if flat_labels[path] is None:
      assert np.array_equal(value, flat_after[path]), path
      assert value.tobytes() == np.asarray(flat_after[path]).tobytes(), path
    else:
      assert not np.array_equal(value, flat_after[path]), path


def test_no_optimizer_state_for_frozen_leaves():
  _, variables, labels, _, _, state, _ = _setup(strategy="linear_probe")
  head = variables["params"]["head"]
  state_sizes = sorted(int(np.size(l)) for l in jax.tree_util.tree_leaves(state["opt_state"]))
  # adamw: count + mu and nu of head/kernel and head/bias; nothing else.
  expected = sorted([1] + 2 * [head["kernel"].size, head["bias"].size])
  assert state_sizes == expected


def _count_convs(fn, *args):
  return str(jax.make_jaxpr(fn)(*args)).count("conv_general_dilated")


def test_frozen_gradients_are_not_computed():
  model, variables, _, _, probe_step, probe_state, (x, y) = _setup(strategy="linear_probe")
  *_, full_step, full_state, _ = _setup(strategy="full")
  forward = _count_convs(lambda v: model.apply(v, x, train=False), variables)
  order = trainer.epoch_order(jax.random.PRNGKey(0), 0, 16)
  # A linear probe differentiates only the head: no conv appears in its backward pass.
  assert _count_convs(probe_step, probe_state, {}, x, y, order) == forward
  # Full fine-tuning: forward + input and weight gradients for each conv.
  assert _count_convs(full_step, full_state, {}, x, y, order) == 3 * forward - 1


def test_strategies_tables():
  c = _config()
  def trained(strategy, **kw):
    c2 = _config(strategy=strategy, **kw)
    return [[b for b in BLOCKS if any(
        __import__("re").search(p, f"{b}/x") and s is not None
        for p, s in [next(r for r in phase.table if __import__("re").search(r[0], f"{b}/x"))])]
            for phase in strategies.phases(c2, BLOCKS)]
  assert trained("full") == [list(BLOCKS)]
  assert trained("linear_probe") == [["head"]]
  assert trained("lp_ft") == [["head"], list(BLOCKS)]
  assert trained("surgical", blocks=("first",)) == [["block1"]]
  assert trained("surgical", blocks=("middle", "head")) == [["block2", "head"]]
  assert trained("surgical", blocks=("last",)) == [["block3"]]
  assert trained("freeze_first_k", freeze_k=2) == [["block3", "head"]]
  layerwise = strategies.phases(_config(strategy="layerwise_lr", lr_decay=0.5), BLOCKS)[0]
  assert [s for _, s in layerwise.table] == [0.125, 0.25, 0.5, 1.0]
  lp_ft = strategies.phases(_config(strategy="lp_ft", num_steps=10, lp_fraction=0.3), BLOCKS)
  assert [p.num_steps for p in lp_ft] == [3, 7]
  assert c.strategy in strategies.STRATEGIES


@pytest.mark.parametrize("overrides,match", [
    (dict(strategy="bitfit_typo"), "valid strategies"),
    (dict(strategy="surgical", blocks=("block7",)), "valid blocks"),
    (dict(strategy="freeze_first_k", freeze_k=9), "valid: 0..3"),
    (dict(strategy="custom"), "pattern_table"),
])
def test_bad_strategy_input(overrides, match):
  with pytest.raises(ValueError, match=match):
    strategies.phases(_config(**overrides), BLOCKS)


def test_l2sp_penalty_closed_form():
  w = {"a": jnp.array([1.0, 2.0]), "head": jnp.array([3.0])}
  w0 = {"a": jnp.array([0.0, 0.0])}
  # 0.1/2 * (1 + 4) + 0.2/2 * 9
  np.testing.assert_allclose(strategies.l2sp_penalty(w, w0, 0.1, 0.2), 0.25 + 0.9, rtol=1e-6)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("pretrain"))
  metrics = trainer.train_and_evaluate(finetune_configs.get_config("quick_source"), workdir)
  return workdir, metrics


def test_checkpoint_round_trip_with_head_reinit(pretrained):
  workdir, _ = pretrained
  saved = checkpoint.load_variables(workdir)
  model = build_model("resnet", num_classes=3, widths=(4, 8, 8))
  fresh = model.init(jax.random.PRNGKey(7), jnp.zeros((1, 8, 8, 1)), train=False)
  merged, report = checkpoint.load_pretrained(fresh, saved)
  assert report["reinitialised"] == ["params/head/kernel", "params/head/bias"]
  assert "params/block1/stem_conv/kernel" in report["loaded"]
  assert any(p.startswith("batch_stats/") for p in report["loaded"])
  np.testing.assert_array_equal(merged["params"]["block2"]["unit1"]["conv1"]["kernel"],
                                saved["params"]["block2"]["unit1"]["conv1"]["kernel"])
  np.testing.assert_array_equal(merged["params"]["head"]["kernel"],
                                fresh["params"]["head"]["kernel"])
  assert merged["params"]["head"]["kernel"].shape == (8, 3)


def test_checkpoint_that_does_not_fit_is_a_clear_error(pretrained):
  workdir, _ = pretrained
  model = build_model("resnet", num_classes=3, widths=(4, 16, 8))
  fresh = model.init(jax.random.PRNGKey(7), jnp.zeros((1, 8, 8, 1)), train=False)
  with pytest.raises(ValueError, match=r"block2/unit1/conv1/kernel: checkpoint shape"):
    checkpoint.load_pretrained(fresh, checkpoint.load_variables(workdir))
  with pytest.raises(FileNotFoundError, match="finished pre-training run"):
    checkpoint.load_variables(os.path.join(workdir, "nope"))
  unfinished = os.path.join(os.path.dirname(workdir), "unfinished")  # checkpoints only
  os.makedirs(os.path.join(unfinished, "checkpoints"), exist_ok=True)
  with pytest.raises(FileNotFoundError, match="finished pre-training run"):
    checkpoint.load_variables(unfinished)


def test_finished_workdir_is_refused(pretrained):
  workdir, _ = pretrained
  with pytest.raises(run_dir.FinishedRunError, match="already holds a finished run"):
    trainer.train_and_evaluate(finetune_configs.get_config("quick_source"), workdir)


def test_changed_config_on_resume_is_refused(tmp_path):
  config = _config(num_steps=4)
  with pytest.raises(KeyboardInterrupt):
    trainer.train_and_evaluate(config, str(tmp_path), step_callback=_interrupt_at(3))
  with pytest.raises(ValueError, match="learning_rate"):
    trainer.train_and_evaluate(_config(num_steps=4, learning_rate=0.5), str(tmp_path))


def _interrupt_at(stop):
  def callback(step):
    if step == stop + 1:  # the checkpoint of step `stop` is on disk; die mid-run
      raise KeyboardInterrupt
  return callback


@pytest.mark.parametrize("strategy,overrides", [
    ("lp_ft", {}), ("l2sp", {}),
    # the frozen prefix cached (batch norm frozen), recomputed from the restored state
    ("lp_ft", {"batch_norm": "frozen"}),
    ("surgical", {"batch_norm": "frozen", "blocks": ("block3",)})])
def test_resume_after_kill_gives_the_same_result(pretrained, tmp_path, strategy, overrides):
  source, _ = pretrained
  config = _config(init_from=source, strategy=strategy, num_steps=6, checkpoint_every=3,
                   **overrides)
  straight = trainer.train_and_evaluate(config, str(tmp_path / "straight"))
  with pytest.raises(KeyboardInterrupt):
    trainer.train_and_evaluate(config, str(tmp_path / "killed"), step_callback=_interrupt_at(3))
  assert not os.path.exists(tmp_path / "killed" / "results.json")
  resumed = trainer.train_and_evaluate(config, str(tmp_path / "killed"))
  assert resumed["test_accuracy"] == straight["test_accuracy"]
  assert resumed["test_loss"] == straight["test_loss"]
  a = checkpoint.load_variables(str(tmp_path / "straight"))
  b = checkpoint.load_variables(str(tmp_path / "killed"))
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def test_nan_loss_stops_and_names_the_step(pretrained, tmp_path):
  source, _ = pretrained
  config = _config(init_from=source, learning_rate=float("nan"), num_steps=6, log_every=3,
                   checkpoint_every=3)
  with pytest.raises(FloatingPointError, match="not finite at step 2"):
    trainer.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints" / "3")


def test_results_json_contract(pretrained):
  workdir, metrics = pretrained
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["kind"] == "finetune" and results["config"]["strategy"] == "full"
  assert 0 <= results["metrics"]["test_accuracy"] <= 1
  assert results["metrics"]["test_accuracy"] == metrics["test_accuracy"]
  assert os.path.exists(os.path.join(workdir, "metrics.jsonl"))
  assert os.listdir(os.path.join(workdir, "tb"))


@pytest.mark.parametrize("strategy,blocks", [("surgical", ("block3",)), ("lp_ft", ()),
                                             ("linear_probe", ())])
def test_frozen_prefix_computed_once_trains_what_every_step_would(pretrained, tmp_path,
                                                                  monkeypatch, strategy,
                                                                  blocks):
  """With batch norm frozen, the trainer runs the frozen leading blocks once on the
  training set and once on each evaluation set (issue 33): the same parameters and scores
  as running them at every step, up to float32 rounding, and the frozen leaves
  bit-identical to the pre-trained ones."""
  from jaxtl.finetune import prefix  # pylint: disable=import-outside-toplevel
  from tests import reference  # pylint: disable=import-outside-toplevel
  workdir, _ = pretrained
  config = finetune_configs.get_config("quick")
  config.update(init_from=workdir, strategy=strategy, batch_norm="frozen", num_steps=8,
                checkpoint_every=4, log_every=4)
  if blocks:
    config.blocks = blocks
  calls = []
  original = prefix.prefix_features
  monkeypatch.setattr(prefix, "prefix_features",
                      lambda *a, **k: calls.append(a[3]) or original(*a, **k))
  with_cache = trainer.train_and_evaluate(config, str(tmp_path / "cached"))
  assert calls and all(stop > 0 for stop in calls), calls  # the cache was used
  # ... once for training and once each for the validation and test sets; LP-FT scores in
  # its second phase, which trains every block
  assert len(calls) == (1 if strategy == "lp_ft" else 3), calls
  config.cache_frozen_prefix = False  # every step runs every block
  calls.clear()
  without = trainer.train_and_evaluate(config, str(tmp_path / "every_step"))
  assert all(stop == 0 for stop in calls), calls
  cached = checkpoint.load_variables(str(tmp_path / "cached"))
  every_step = checkpoint.load_variables(str(tmp_path / "every_step"))
  assert reference.relative_error(cached, every_step) < reference.F32_RTOL
  for split in ("val", "test"):  # scored on the cache: the same up to float32 rounding
    np.testing.assert_allclose(with_cache[f"{split}_loss"], without[f"{split}_loss"],
                               rtol=reference.F32_RTOL)
    assert abs(with_cache[f"{split}_accuracy"] - without[f"{split}_accuracy"]) <= (
        1 / with_cache[f"num_{split}"])  # at most one near-tie flipped by rounding
  before = partition.flatten(checkpoint.load_variables(workdir)["params"])
  for path, value in partition.flatten(cached["params"]).items():
    trained = path.startswith("head/") or any(path.startswith(f"{b}/") for b in blocks)
    if not trained and strategy != "lp_ft":
      np.testing.assert_array_equal(value, before[path])


def test_frozen_prefix_not_cached_says_why_once(monkeypatch):
  """Frozen blocks that do not map an image to the same output at every step (batch
  statistics in training mode) run at every step; the first time, the log says why."""
  from jaxtl import objectives  # pylint: disable=import-outside-toplevel
  config = finetune_configs.get_config("quick")
  config.strategy = "linear_probe"
  model = build_model(config.model, num_classes=3, **dict(config.model_kwargs))
  images = np.zeros((4, 8, 8, 1), np.float32)
  variables = model.init(jax.random.PRNGKey(0), images, train=False)
  (phase,) = strategies.phases(config, model.block_names())
  labels = partition.label_params(variables["params"], phase.table)
  supervised = objectives.make("supervised", {}, 3, images.shape[1:])
  said = []
  monkeypatch.setattr(trainer, "_SAID", set())
  monkeypatch.setattr(trainer.logging, "info", lambda msg, *args: said.append(msg % args))
  config.batch_norm = "frozen"
  assert trainer.frozen_prefix(model, variables, labels, config, supervised, images) == len(
      model.block_names()) - 1  # every block but the head, once
  config.batch_norm = "train"
  for _ in range(2):
    assert trainer.frozen_prefix(model, variables, labels, config, supervised, images) == 0
  assert len(said) == 1 and "batch_norm='train'" in said[0] and "run at every step" in said[0]
  config.batch_norm, config.cache_frozen_prefix = "frozen", False  # the switch, said too
  assert trainer.frozen_prefix(model, variables, labels, config, supervised, images) == 0
  assert len(said) == 2 and "cache_frozen_prefix=False" in said[1]
