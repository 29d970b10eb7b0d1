"""The black-box meta-learner (jaxtl.models.blackbox, algorithm="blackbox")."""
import jax
import numpy as np

from experiments.configs import meta as meta_configs
from jaxtl import adapt
from jaxtl.meta import train
from jaxtl.meta.algorithms import MetaLearner
from jaxtl.models.blackbox import BlackBox

WAY, SHOT, QUERIES = 3, 2, 4


def _task_and_params():
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  support_x = jax.random.uniform(keys[0], (WAY * SHOT, 28, 28, 1))
  support_y = np.repeat(np.arange(WAY), SHOT)
  query_x = jax.random.uniform(keys[1], (QUERIES, 28, 28, 1))
  learner = MetaLearner(BlackBox(WAY, features=8, width=16, heads=2, conv="im2col"),
                        algorithm="blackbox", ways=WAY)
  params = learner.init(keys[2], support_x)[0]["params"]
  return learner, params, support_x, support_y, query_x


def test_queries_get_way_logits_independent_of_the_support_order_and_other_queries():
  learner, params, support_x, support_y, query_x = _task_and_params()
  logits = np.asarray(learner.task_model_logits(params, support_x, support_y, query_x))
  assert logits.shape == (QUERIES, WAY) and np.isfinite(logits).all()
  # No positional encoding: a permuted support set is the same set. Float sums in
  # attention run in another order, so equal to float32 rounding, not bit for bit.
  order = np.random.default_rng(0).permutation(WAY * SHOT)
  permuted = learner.task_model_logits(params, support_x[order], support_y[order], query_x)
  np.testing.assert_allclose(permuted, logits, rtol=1e-5, atol=1e-5)
  # A query attends to the support set and itself only: alone it is predicted the same.
  for j in range(QUERIES):
    alone = learner.task_model_logits(params, support_x, support_y, query_x[j:j + 1])
    np.testing.assert_allclose(alone[0], logits[j], rtol=1e-5, atol=1e-5)
  # The labels are read. (Renaming the classes need not permute the logits: label c's
  # embedding and output c are separate weights, tied only by training.)
  swapped = np.where(support_y == 0, 1, np.where(support_y == 1, 0, support_y))
  flipped = np.asarray(learner.task_model_logits(params, support_x, swapped, query_x))
  assert np.abs(flipped - logits).max() > 1e-3


def test_blackbox_meta_trains_evaluates_and_adapts_quick(data_dir, tmp_path):
  config = meta_configs.get_config("quick")
  config.data_dir, config.algorithm = data_dir, "blackbox"
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert 0 <= metrics["test_accuracy"] <= 1
  by_steps = metrics["test_accuracy_by_steps"]
  assert len(set(by_steps.values())) == 1  # no inner steps: the same at every count
  again = train.evaluate_checkpoint(config, str(tmp_path), str(tmp_path / "eval"))
  assert again["test_accuracy"] == metrics["test_accuracy"]
  data = train.make_task_data(config)
  test_data, sampler = data.test, data.test_sampler
  episodes = sampler(jax.random.PRNGKey(0), test_data, 1)
  task = adapt.load(str(tmp_path)).adapt(np.asarray(episodes.support_x[0]),
                                         np.asarray(episodes.support_y[0]))
  assert task.predict(np.asarray(episodes.query_x[0])).probabilities.shape == (5, 5)
