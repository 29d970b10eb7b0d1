"""The compiled fine-tuning grid (`jaxtl.finetune.grid`): every configuration computes what
a plain per-configuration loop computes, and each strategy changes exactly what it says."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxtl import partition
from jaxtl.finetune import grid, strategies
from jaxtl.finetune.trainer import forward
from jaxtl.models import build_model
from tests import reference

N, STEPS, BATCH = 24, 6, 8


def _setup(strategy="full", blocks=("block1",), batch_norm="frozen", reinit=(), steps=STEPS):
  model = build_model("resnet", num_classes=3, widths=(4, 4, 8, 8))
  rng = np.random.default_rng(0)
  images = rng.random((N, 8, 8, 1), np.float32)  # random images: BN well conditioned
  labels = rng.integers(0, 3, N).astype(np.int32)
  variables = model.init(jax.random.PRNGKey(1), images[:1], train=False)
  # Non-trivial running statistics, as a pre-trained model has.
  _, stats = forward(model, variables["params"], variables["batch_stats"], images, True)
  variables = {"params": variables["params"], "batch_stats": stats}
  config = ml_collections.ConfigDict(dict(strategy=strategy, num_steps=steps, blocks=blocks,
                                          lp_fraction=0.5))
  phases = tuple(strategies.phases(config, model.block_names()))
  spec = grid.GridSpec(phases, BATCH, batch_norm, reinit)
  return model, variables, spec, images, labels


@functools.partial(jax.jit, static_argnums=(0, 1))
def _reference_step(model, bn_train, trainable, frozen, stats, opt_state, x, y, lr, wd):
  tx = optax.chain(optax.add_decayed_weights(wd), optax.scale_by_adam(),
                   optax.scale_by_learning_rate(lr))

  def loss(t):
    logits, new = forward(model, partition.merge(t, frozen), stats, x, bn_train)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new
  grads, stats = jax.grad(loss, has_aux=True)(trainable)
  updates, opt_state = tx.update(grads, opt_state, trainable)
  return optax.apply_updates(trainable, updates), stats, opt_state


def _reference_loop(model, variables, spec, images, labels, lr, wd, seed, index):
  """One configuration as a plain Python loop over steps (float64 by the caller): a fresh
  Adam per phase, the epoch's order drawn from (seed, epoch)."""
  order_key = jax.random.split(jax.random.PRNGKey(seed))[1]
  per_epoch = len(index) // spec.batch_size
  params, stats, step = variables["params"], variables["batch_stats"], 0
  for phase in spec.phases:
    labels_tree = partition.label_params(params, phase.table)
    trainable, frozen = partition.split(params, labels_tree, lambda l: l is not None)
    opt_state = optax.scale_by_adam().init(trainable)
    opt_state = (optax.EmptyState(), opt_state, optax.EmptyState())
    for _ in range(phase.num_steps):
      order = jax.random.permutation(jax.random.fold_in(order_key, step // per_epoch),
                                     len(index))
      pick = index[np.asarray(order)[(step % per_epoch) * spec.batch_size:][:spec.batch_size]]
      trainable, stats, opt_state = _reference_step(
          model, spec.batch_norm == "train", trainable, frozen, stats, opt_state,
          images[pick], labels[pick], lr, wd)
      step += 1
    params = partition.merge(trainable, frozen)
  return {"params": params, "batch_stats": stats}


@pytest.mark.parametrize("strategy,blocks,batch_norm,chunk", [
    ("lp_ft", (), "frozen", 1), ("full", (), "train", 2),
    ("surgical", ("block3",), "frozen", 2),  # blocks 1-2 a frozen prefix computed once
    ("linear_probe", (), "frozen", 1)])
def test_grid_matches_a_float64_loop_per_configuration(strategy, blocks, batch_norm, chunk):
  """One after the other (chunk 1) and vmapped (chunk 2) alike; with a frozen prefix
  computed once (the reference runs the whole network at every step)."""
  model, variables, spec, images, labels = _setup(strategy, blocks or ("block1",),
                                                  batch_norm=batch_norm)
  spec = dataclasses.replace(spec, chunk=chunk)
  lrs, wds, seeds = [1e-2, 3e-3], [0.0, 1e-2], [0, 1]
  index = np.stack([np.random.default_rng(s).permutation(N)[:16] for s in seeds])
  got = grid.flat_configs(grid.train_grid(model, variables, spec, images, labels, lrs, wds,
                                          seeds, index))
  hp = [(lr, wd, s, i) for s, i in zip(seeds, index) for lr, wd in zip(lrs, wds)]
  for k, (lr, wd, seed, rows) in enumerate(hp):  # seed-major, as flat_configs orders them
    with reference.float64():
      want = _reference_loop(model, reference.to_float64(variables), spec,
                             reference.to_float64(images), labels, lr, wd, seed, rows)
    reference.assert_close(grid.take(got, k), want, what=f"configuration {k}")


@pytest.mark.parametrize("strategy,blocks,batch_norm,params_in,stats_changed", [
    ("surgical", ("block2",), "frozen", {"block2"}, False),
    ("linear_probe", (), "frozen", {"head"}, False),
    ("surgical", ("block3",), "train", {"block3"}, True),
])
def test_each_strategy_changes_exactly_what_it_says(strategy, blocks, batch_norm, params_in,
                                                      stats_changed):
  model, variables, spec, images, labels = _setup(strategy, blocks or ("block1",), batch_norm)
  out = grid.take(grid.flat_configs(grid.train_grid(
      model, variables, spec, images, labels, [1e-2], [1e-2], [0], np.arange(16)[None])), 0)
  changed = grid.changed_leaves(variables, out)
  flat = partition.flatten(variables["params"])
  assert {p.split("/")[0] for p in changed["params"]} == params_in
  # Every leaf of the tuned blocks moved; every other one is bit-identical.
  assert set(changed["params"]) == {p for p in flat if p.split("/")[0] in params_in}
  all_stats = set(partition.flatten(variables["batch_stats"]))
  assert set(changed["batch_stats"]) == (all_stats if stats_changed else set())


@pytest.mark.parametrize("strategy,blocks,batch_norm,reinit,start", [
    ("surgical", ("block3",), "frozen", (), 2), ("linear_probe", (), "frozen", (), 4),
    ("linear_probe", (), "train", (), 0), ("full", (), "frozen", (), 0),
    ("lp_ft", (), "frozen", (), 0), ("surgical", ("block3",), "frozen", (r"^block2/",), 1)])
def test_frozen_prefix_is_the_blocks_before_the_first_trained_or_redrawn_one(
    strategy, blocks, batch_norm, reinit, start):
  model, variables, spec, _, _ = _setup(strategy, blocks or ("block1",), batch_norm, reinit)
  assert grid.prefix_start(model, variables, spec) == start


def test_prefix_and_whole_network_give_the_same_grid():
  model, variables, spec, images, labels = _setup("surgical", ("block4",))
  args = (model, variables, spec, images, labels, [1e-2], [0.0], [0], np.arange(16)[None])
  a = grid.flat_configs(grid.train_grid(*args))
  uncached = dataclasses.replace(spec, cache_frozen_prefix=False)
  assert grid.prefix_start(model, variables, uncached) == 0
  b = grid.flat_configs(grid.train_grid(model, variables, uncached, *args[3:]))
  reference.assert_close(a, b, what="prefix vs whole network")
  start = grid.prefix_start(model, variables, spec)
  feats = grid.prefix_features(model, variables, images, start)
  np.testing.assert_array_equal(grid.evaluate_grid(model, a, feats, labels, start=start),
                                grid.evaluate_grid(model, a, images, labels))


def test_zero_learning_rate_changes_only_the_reinitialised_head():
  model, variables, spec, images, labels = _setup(reinit=(r"^head/",))
  out = grid.flat_configs(grid.train_grid(model, variables, spec, images, labels, [0.0],
                                          [0.0], [3, 4], np.stack([np.arange(16)] * 2)))
  a, b = grid.take(out, 0), grid.take(out, 1)
  # Only the head was drawn afresh (its bias is initialised to zero, like the one it replaces).
  assert grid.changed_leaves(variables, a)["params"] == ["head/kernel"]
  assert grid.changed_leaves(variables, a)["batch_stats"] == []
  assert not np.array_equal(a["params"]["head"]["kernel"], b["params"]["head"]["kernel"])


def test_evaluate_grid_counts_correct_predictions():
  model, variables, spec, images, labels = _setup()
  stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), variables)
  correct = grid.evaluate_grid(model, stacked, images, labels, batch_size=10)  # padded batch
  logits, _ = forward(model, variables["params"], variables["batch_stats"], images, False)
  want = np.asarray(jnp.argmax(logits, -1) == labels)
  assert correct.shape == (2, N)
  np.testing.assert_array_equal(correct[0], want)
  np.testing.assert_array_equal(correct[1], want)


def test_evaluate_grid_shares_frozen_leaves_and_keeps_configs_apart():
  # Three configurations that differ in the head only (as after a linear probe): the
  # shared blocks go in once; every configuration must still get its own predictions.
  model, variables, _, images, labels = _setup()
  heads = [variables["params"]["head"]["kernel"] * s for s in (1.0, -1.0, 0.5)]
  stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a] * 3), variables)
  stacked["params"]["head"]["kernel"] = jnp.stack(heads)
  correct = grid.evaluate_grid(model, stacked, images, labels, batch_size=10, chunk=2)
  with reference.float64():
    for k in range(3):
      logits, _ = forward(model, reference.to_float64(grid.take(stacked, k)["params"]),
                          reference.to_float64(variables["batch_stats"]), reference.to_float64(images),
                          False)
      top2 = np.sort(np.asarray(logits), -1)[:, -2:]
      clear = top2[:, 1] - top2[:, 0] > 1e-4  # float32 cannot flip these
      want = np.asarray(jnp.argmax(logits, -1) == labels)
      np.testing.assert_array_equal(correct[k][clear], want[clear])
      assert clear.sum() >= N - 2
  assert not np.array_equal(correct[0], correct[1])  # the negated head predicts otherwise
