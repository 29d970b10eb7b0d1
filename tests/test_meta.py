import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import meta as meta_configs
from jaxtl import partition, report, workdir as run_dir
from jaxtl.errors import ConfigError
from jaxtl.studies import documents, meta_tables
from jaxtl.data import ImageDataset
from jaxtl.meta import tasks, train
from jaxtl.meta.algorithms import ALGORITHMS, ANIL_TABLE, MetaLearner
from jaxtl.models import build_model
from jaxtl.models.blackbox import BlackBox
from jaxtl.models.relation import RelationNet
from tests import reference

jax.config.update("jax_enable_x64", False)


def _linear_learner(**kw):
  return MetaLearner(build_model("mlp", num_outputs=1, hidden=()), loss="mse",
                     inner_table=((".*", True),), **kw)


def _regression_task(seed=0, n=6, d=3):
  rng = np.random.default_rng(seed)
  xs, xq = rng.normal(size=(n, d)), rng.normal(size=(n, d))
  ys, yq = rng.normal(size=(n, 1)), rng.normal(size=(n, 1))
  f32 = lambda a: jnp.asarray(a, jnp.float32)[None]
  return tasks.Episodes(f32(xs), f32(ys), f32(xq), f32(yq))


def _closed_form_meta_gradient(learner, episodes, meta_params, second_order: bool):
  """MAML's meta-gradient of a linear model, one inner step, in float64 numpy.

  theta = [w; b]; L(theta) = mean((Phi theta - y)^2); grad = 2/n Phi^T r; H = 2/n Phi^T Phi;
  MAML: (I - alpha H_s) grad_q(theta - alpha grad_s); first order drops (I - alpha H_s)."""
  p = meta_params["params"]["head"]
  theta = np.concatenate([np.asarray(p["kernel"])[:, 0], np.asarray(p["bias"])]).astype(np.float64)
  phi = lambda x: np.concatenate([np.asarray(x[0], np.float64), np.ones((x.shape[1], 1))], 1)
  ps, pq = phi(episodes.support_x), phi(episodes.query_x)
  ys = np.asarray(episodes.support_y[0, :, 0], np.float64)
  yq = np.asarray(episodes.query_y[0, :, 0], np.float64)
  n, alpha = len(ys), learner.inner_lr
  adapted = theta - alpha * 2 / n * ps.T @ (ps @ theta - ys)
  grad_q = 2 / n * pq.T @ (pq @ adapted - yq)
  if not second_order:
    return grad_q
  return (np.eye(len(theta)) - alpha * 2 / n * ps.T @ ps) @ grad_q


def _flat_head(grads):
  g = grads["params"]["head"]
  return np.concatenate([np.asarray(g["kernel"])[:, 0], np.asarray(g["bias"])])


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_meta_gradient_matches_closed_form_on_linear_model(algorithm):
  """In float64, so the tolerance is float64 rounding; alpha H is ~0.2 here, so first and
  second order differ by ~20% and dropping (or adding) the stop_gradient fails the test."""
  with reference.float64():
    learner = _linear_learner(algorithm=algorithm, inner_lr=0.1, inner_steps=1)
    episodes = reference.to_float64(_regression_task())
    meta_params, bs = learner.init(jax.random.PRNGKey(0), episodes.support_x[0])
    meta_params = reference.to_float64(meta_params)
    _, grads = learner.meta_gradients(meta_params, bs, episodes)
    got = _flat_head(grads)
  assert got.dtype == np.float64
  for second_order in (True, False):
    expected = _closed_form_meta_gradient(learner, episodes, meta_params, second_order)
    if second_order == (algorithm == "maml"):
      np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    else:
      assert np.abs(got - expected).max() > 0.05 * np.abs(expected).max()


def test_zero_inner_steps_equals_plain_loss():
  with reference.float64():  # the same function both ways: equal up to float64 rounding
    learner = _linear_learner(inner_steps=0)
    episodes = reference.to_float64(_regression_task(1))
    meta_params, bs = learner.init(jax.random.PRNGKey(0), episodes.support_x[0])
    meta_params = reference.to_float64(meta_params)
    (meta_loss, _), grads = learner.meta_gradients(meta_params, bs, episodes)
    plain = lambda p: learner.loss_and_metric(p, bs, episodes.query_x[0], episodes.query_y[0])[0]
    np.testing.assert_allclose(meta_loss, plain(meta_params["params"]), rtol=1e-12)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12),
                           grads["params"], jax.grad(plain)(meta_params["params"]))


def _class_data(num_classes=12, per_class=6, size=8):
  """Each image is filled with a unique id 1000 * class + example, for bookkeeping."""
  ids = 1000 * np.arange(num_classes)[:, None] + np.arange(per_class)[None]
  return jnp.asarray(np.broadcast_to(ids[..., None, None, None], ids.shape + (size, size, 1)),
                     jnp.float32)


def test_backtracking_test_steps_never_raise_the_support_loss():
  """A step size far beyond 2 / L of this task: plain steps diverge; backtracking halves
  each step until the support loss goes down (query = support, so the per-step metric
  is the support loss)."""
  learner = _linear_learner(inner_lr=5.0)
  task = _regression_task()
  on_support = tasks.Episodes(task.support_x, task.support_y, task.support_x, task.support_y)
  meta_params, bs = learner.init(jax.random.PRNGKey(0), task.support_x[0])
  plain = np.asarray(learner.evaluate_tasks(meta_params, bs, on_support, 10))[0]
  assert not plain[-1] < 100 * plain[0]  # diverged (or nan)
  safe = np.asarray(learner.evaluate_tasks(meta_params, bs, on_support, 10, backtrack=True))[0]
  assert np.all(np.isfinite(safe)) and np.all(safe[1:] <= safe[:-1]) and safe[-1] < safe[0]


def _image_classes(num_classes=12, per_class=6, size=16):
  """Random images: batch norm over a few support images is well conditioned on them
  (constant images make its variances tiny and the gradients rounding-sensitive)."""
  return jax.random.normal(jax.random.PRNGKey(0), (num_classes, per_class, size, size, 1))


def _conv_learner(conv="im2col", **kw):
  return MetaLearner(build_model("conv4", num_classes=3, features=4, conv=conv), ways=3, **kw)


def test_anil_by_name_adapts_only_the_head():
  episodes = tasks.sample_classification(jax.random.PRNGKey(0), _image_classes(), 1, 3, 1, 2)
  learner = _conv_learner(algorithm="anil", inner_steps=3, inner_lr=0.5)  # no table given
  assert learner.inner_table == ANIL_TABLE
  meta_params, bs = learner.init(jax.random.PRNGKey(0), episodes.support_x[0])
  phi, _ = learner.adapt(meta_params, bs, episodes.support_x[0], episodes.support_y[0], 3)
  before, after = partition.flatten(meta_params["params"]), partition.flatten(phi)
  for path, value in before.items():
    if path.startswith("head/"):
      assert not np.array_equal(value, after[path])
    else:  # the body gets no inner update: bit-identical
      assert np.asarray(value).tobytes() == np.asarray(after[path]).tobytes(), path
  with pytest.raises(ValueError, match="adapts the head only"):
    _conv_learner(algorithm="anil", inner_table=((".*", True),))


def test_episodes_shapes_disjoint_and_within_split():
  data = _class_data()
  way, shot, query, batch = 5, 2, 3, 7
  ep = tasks.sample_classification(jax.random.PRNGKey(3), data, batch, way, shot, query)
  assert ep.support_x.shape == (batch, way * shot, 8, 8, 1)
  assert ep.query_x.shape == (batch, way * query, 8, 8, 1)
  for b in range(batch):
    s_ids = np.asarray(ep.support_x[b, :, 0, 0, 0]).astype(int)
    q_ids = np.asarray(ep.query_x[b, :, 0, 0, 0]).astype(int)
    assert not set(s_ids) & set(q_ids)
    assert len(set(s_ids // 1000)) == way and set(q_ids // 1000) == set(s_ids // 1000)
    # Labels 0..N-1; one label per class, shared by support and query.
    for ids, labels in [(s_ids, ep.support_y[b]), (q_ids, ep.query_y[b])]:
      assert sorted(set(np.asarray(labels).tolist())) == list(range(way))
      for label in range(way):
        assert len(set(ids[np.asarray(labels) == label] // 1000)) == 1
    label_of = {c: l for c, l in zip(s_ids // 1000, np.asarray(ep.support_y[b]))}
    assert all(label_of[c] == l for c, l in zip(q_ids // 1000, np.asarray(ep.query_y[b])))


def test_sampling_is_seeded():
  data = _class_data()
  a = tasks.sample_classification(jax.random.PRNGKey(5), data, 3, 4, 1, 1)
  b = tasks.sample_classification(jax.random.PRNGKey(5), data, 3, 4, 1, 1)
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def test_random_subset_is_distinct_and_uniform():
  keys = jax.random.split(jax.random.PRNGKey(0), 20000)
  subsets = np.asarray(jax.vmap(lambda k: tasks.random_subset(k, 5, 3))(keys))
  assert all(len(set(row)) == 3 for row in subsets[:500])
  # Every index is equally likely in every position (1/5), as for random.choice.
  for position in range(3):
    freq = np.bincount(subsets[:, position], minlength=5) / len(subsets)
    np.testing.assert_allclose(freq, 0.2, atol=0.015)


@pytest.mark.parametrize("way,shot,query,match", [(13, 1, 1, "13-way tasks need 13 classes"),
                                                  (5, 4, 3, "only 6")])
def test_impossible_episodes_are_clear_errors(way, shot, query, match):
  with pytest.raises(ValueError, match=match):
    tasks.sample_classification(jax.random.PRNGKey(0), _class_data(), 2, way, shot, query)


def test_omniglot_class_splits_and_rotations():
  labels = np.repeat(np.arange(1623), 2)
  ds = ImageDataset(np.zeros((len(labels), 2, 2, 1), np.float32), labels.astype(np.int32), "o")
  splits = tasks.omniglot_class_splits(ds, "maml", seed=1, num_val=100)
  assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (1100, 100, 423)
  assert not set(splits["train"]) & set(splits["test"])
  assert not set(splits["val"]) & set(splits["train"])
  again = tasks.omniglot_class_splits(ds, "maml", seed=1)
  assert set(again["train"]) == set(splits["train"]) | set(splits["val"])
  lake = tasks.omniglot_class_splits(ds, "lake")
  assert len(lake["train"]) == 964 and lake["test"].min() == 964
  images = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2, 1).astype(np.float32)
  rotated = tasks.rotations(images)
  assert rotated.shape == (8, 3, 2, 2, 1)
  np.testing.assert_array_equal(rotated[2 + 1, 0, ..., 0], np.rot90(images[1, 0, ..., 0]))


def test_sinusoid_tasks_follow_maml():
  episodes, (amp_phase) = tasks.sample_sinusoid(jax.random.PRNGKey(0), 500, 5, 10)
  amp, phase = np.asarray(amp_phase[:, 0]), np.asarray(amp_phase[:, 1])
  assert 0.1 <= amp.min() and amp.max() <= 5.0 and 0 <= phase.min() and phase.max() <= np.pi
  x = np.asarray(episodes.support_x)
  assert -5 <= x.min() and x.max() <= 5 and x.shape == (500, 5, 1)
  np.testing.assert_allclose(episodes.support_y, amp[:, None, None] * np.sin(x - phase[:, None,
                                                                                    None]),
                             atol=1e-5)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_gives_finite_gradients(algorithm):
  episodes = tasks.sample_classification(jax.random.PRNGKey(0), _image_classes(), 2, 3, 1, 2)
  model = build_model("conv4", num_classes=0 if algorithm == "protonet" else 3, features=4)
  if algorithm == "blackbox":  # reads (support_x, support_y, query_x)
    model = BlackBox(3, features=4, width=8, heads=2)
  if algorithm == "relation":  # so does a relation network
    model = RelationNet(3, features=4, hidden=(8,))
  learner = MetaLearner(model, algorithm=algorithm, ways=3, inner_lr=0.1)
  meta_params, bs = learner.init(jax.random.PRNGKey(0), episodes.support_x[0])
  (loss, metric), grads = jax.jit(learner.meta_gradients)(meta_params, bs, episodes)
  assert np.isfinite(loss) and 0 <= metric <= 1
  assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(meta_params)
  if algorithm == "metasgd":  # the step sizes are learned
    assert any(np.abs(g).sum() > 0 for g in jax.tree_util.tree_leaves(grads["inner_lr"]))
  per_step = learner.evaluate_tasks(meta_params, bs, episodes, 2)
  assert per_step.shape == (2, 3)


def test_remat_batching_and_conv_kernels_match_a_float64_reference():
  """Second-order meta-gradients (2 inner steps) of every way to compute them, in float32,
  against XLA's conv in an unrolled loop in float64 (`tests/reference.py` for the
  tolerance). Measured on a 2-core AMD EPYC: 1e-6 to 1e-5 of the scale, XLA's grouped conv
  under vmap the largest; a step size off by 3% is off by 0.1."""
  episodes = tasks.sample_classification(jax.random.PRNGKey(0), _image_classes(), 3, 3, 2, 2)
  make = lambda **kw: _conv_learner(**{"inner_steps": 2, "inner_lr": 0.3, **kw})
  meta_params, bs = make().init(jax.random.PRNGKey(0), episodes.support_x[0])
  with reference.float64():
    exact = make(conv="xla", task_batching="unroll")
    expected = jax.jit(exact.meta_gradients)(reference.to_float64(meta_params), bs,
                                             reference.to_float64(episodes))[1]
  assert jax.tree_util.tree_leaves(expected)[0].dtype == np.float64
  for kw in [{}, {"remat": True}, {"task_batching": "map"}, {"conv": "xla"},
             {"conv": "xla", "task_batching": "map"}]:
    got = jax.jit(make(**kw).meta_gradients)(meta_params, bs, episodes)[1]
    reference.assert_close(got, expected, what=str(kw))
  # The tolerance separates a wrong computation: first order is off by over 100 times it.
  got = jax.jit(make(algorithm="fomaml").meta_gradients)(meta_params, bs, episodes)[1]
  assert reference.relative_error(got, expected) > 100 * reference.F32_RTOL


def test_meta_train_quick_end_to_end_and_meta_eval(data_dir, tmp_path):
  config = meta_configs.get_config("quick")
  config.data_dir = data_dir
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert 0 <= metrics["test_accuracy"] <= 1 and metrics["eval_tasks"] == 20
  assert set(metrics["test_accuracy_by_steps"]) == {"0", "1", "3"}
  again = train.evaluate_checkpoint(config, str(tmp_path))
  assert again["test_accuracy_by_steps"] == metrics["test_accuracy_by_steps"]
  other = config.copy_and_resolve_references()
  other.model_kwargs.pool = "mean"  # another network than the one trained: a clear error
  with pytest.raises(ValueError, match="model_kwargs.pool=flatten"):
    train.evaluate_checkpoint(other, str(tmp_path), str(tmp_path / "other"))
  # The report finds the run and shows its number with its CI, and plots it.
  with open(documents.write_report(str(tmp_path), str(tmp_path / "report"))) as f:
    text = f.read()
  ci = f"{100 * metrics['test_accuracy']:.2f} +- {100 * metrics['test_accuracy_ci95']:.2f}"
  assert "## Meta-learning" in text and ci in text
  # A user's folder: the run by its own name and length; a paper's number only as what a
  # run of the paper's length reached, not beside this 6-iteration run as comparable; no
  # MAML-table layout and no blocks of the repository's documents.
  row = next(line for line in text.splitlines() if line.startswith("| . | maml |"))
  assert "| 6 |" in row and row.endswith("| (98.7 +- 0.4 after 60,000 it.) |"), row
  assert "| maml, published |" not in text and "Blocks of the documents" not in text
  assert os.path.exists(tmp_path / "report" / "meta_accuracy_by_steps.png")
  assert os.path.exists(tmp_path / "report" / "learning_curves_meta.png")
  assert not os.path.exists(tmp_path / "report" / "learning_curves.png")  # no empty panels
  # The repository's own results keep MAML Table 1's layout, from the re-evaluations.
  assert meta_tables.omniglot_grid(report.find_runs(str(tmp_path))).startswith("| method |")


def test_bad_meta_config_is_a_clear_error():
  config = meta_configs.get_config("quick")
  config.algorithm = "mamll"
  with pytest.raises(ValueError, match="valid"):
    train.make_learner(config)
  with pytest.raises(ValueError, match="valid: sinusoid"):
    meta_configs.get_config("omniglot_7w1s")


def _sinusoid_config():
  config = meta_configs.get_config("sinusoid")
  config.num_steps, config.steps_per_call = 20, 5
  config.log_every = config.checkpoint_every = 10
  config.eval_tasks, config.eval_batch = 20, 10
  return config


def test_meta_train_resumes_after_a_kill_to_the_same_result(tmp_path):
  config = _sinusoid_config()
  straight_lr = config.inner_lr
  straight = train.train_and_evaluate(config, str(tmp_path / "straight"))

  def die(step):
    if step == 15:  # the checkpoint of iteration 10 is on disk
      raise KeyboardInterrupt
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, str(tmp_path / "killed"), step_callback=die)
  # A run in progress evaluates from its last checkpoint, which is a 10-iteration run.
  partial = train.evaluate_checkpoint(config, str(tmp_path / "killed"),
                                      str(tmp_path / "killed_eval"))
  assert partial["meta_iterations"] == 10 and partial["num_steps"] == 20
  assert [(s["from"], s["to"]) for s in partial["train_segments"]] == [(0, 10)]
  config_10 = _sinusoid_config()
  config_10.num_steps = 10
  short = train.train_and_evaluate(config_10, str(tmp_path / "short"))
  assert partial["test_mse_by_steps"] == short["test_mse_by_steps"]
  # A resumed run computes what the started one would have: another inner_lr is refused,
  # but fields of how it executes may change (a CPU run going on on a GPU).
  config.inner_lr = 0.02
  with pytest.raises(ValueError, match=r"\['inner_lr'\] differ"):
    train.train_and_evaluate(config, str(tmp_path / "killed"))
  config.inner_lr = straight_lr
  config.steps_per_call, config.log_every = 10, 20
  resumed = train.train_and_evaluate(config, str(tmp_path / "killed"))
  for s in straight["test_mse_by_steps"]:
    np.testing.assert_allclose(resumed["test_mse_by_steps"][s], straight["test_mse_by_steps"][s],
                               rtol=1e-5)
  # Its training time is the two processes' up to their checkpoints: iterations 11-15 of
  # the killed one were lost and are not counted.
  segments = resumed["train_segments"]
  assert [(s["from"], s["to"]) for s in segments] == [(0, 10), (10, 20)]
  assert resumed["train_seconds"] == pytest.approx(sum(s["seconds"] for s in segments), abs=0.2)
  assert segments[0]["machine"].startswith("CPU")
  # meta_eval of the finished run carries its iterations and time.
  again = train.evaluate_checkpoint(config, str(tmp_path / "killed"), str(tmp_path / "eval"))
  assert again["meta_iterations"] == 20 and again["train_segments"] == segments


def test_train_clock_marks_time_it_did_not_see_as_unknown(tmp_path):
  clock = run_dir.TrainClock(str(tmp_path), 30)  # resumed at 30, no train_time.json
  clock.save(40)
  resumed = run_dir.TrainClock(str(tmp_path), 40)
  segments = resumed.segments(50)
  assert [(s["from"], s["to"], s["seconds"] is None) for s in segments] == [
      (0, 30, True), (30, 40, False), (40, 50, False)]
  assert run_dir.total_seconds(segments) is None
  assert run_dir.total_seconds(segments[1:]) == pytest.approx(
      segments[1]["seconds"] + segments[2]["seconds"], abs=0.2)


def test_meta_nan_stops_and_names_the_iteration(tmp_path):
  config = _sinusoid_config()
  config.meta_lr = float("nan")
  with pytest.raises(FloatingPointError, match="not finite at step 2"):
    train.train_and_evaluate(config, str(tmp_path))


def test_protonet_support_finetuning_starts_as_protonets_and_fits_the_support():
  """Zero steps: the prototype head's logits are ProtoNets' plus |f(query)|^2, row by row
  (float64); steps lower the support's loss; another algorithm refuses the setting."""
  episodes = tasks.sample_classification(jax.random.PRNGKey(0), _image_classes(), 2, 3, 1, 4)
  task = jax.tree_util.tree_map(lambda a: a[0], episodes)
  model = build_model("conv4", num_classes=0, features=4, conv="xla")
  learner = MetaLearner(model, algorithm="protonet", ways=3)
  meta_params, bs = learner.init(jax.random.PRNGKey(0), task.support_x)
  with reference.float64():
    params, exact = reference.to_float64((meta_params["params"], task))
    args = (params, bs, exact.support_x, exact.support_y, exact.query_x)
    start = learner.finetuned_protonet_logits(*args)
    query = learner.embed(params, bs, exact.support_x, exact.query_x)[1]
    expected = learner.protonet_logits(*args) + jnp.sum(jnp.square(query), -1)[:, None]
    assert start.dtype == np.float64
    np.testing.assert_allclose(start, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())

  def support_loss(steps):
    tuned = dataclasses.replace(learner, support_steps=steps, support_lr=1e-2)
    logits = tuned.finetuned_protonet_logits(  # the support as its own queries
        meta_params["params"], bs, task.support_x, task.support_y, task.support_x)
    return float(optax.softmax_cross_entropy_with_integer_labels(logits, task.support_y).mean())
  assert support_loss(20) < 0.5 * support_loss(0)
  with pytest.raises(ConfigError, match="support_steps=5.*maml"):
    MetaLearner(model, algorithm="maml", ways=3, support_steps=5)
