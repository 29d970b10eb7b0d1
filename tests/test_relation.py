"""The relation network, a learned metric (jaxtl.models.relation, algorithm="relation")."""
import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import meta as meta_configs
from jaxtl import adapt
from jaxtl.meta import train
from jaxtl.meta.algorithms import MetaLearner
from jaxtl.meta.tasks import Episodes
from jaxtl.models.relation import RelationNet

WAY, SHOT, QUERIES = 3, 2, 4


def _task_and_learner():
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  support_x = jax.random.uniform(keys[0], (WAY * SHOT, 28, 28, 1))
  support_y = np.repeat(np.arange(WAY), SHOT)
  query_x = jax.random.uniform(keys[1], (QUERIES, 28, 28, 1))
  learner = MetaLearner(RelationNet(WAY, features=8, hidden=(16, 8), conv="im2col"),
                        algorithm="relation", ways=WAY)
  params = learner.init(keys[2], support_x)[0]["params"]
  return learner, params, support_x, support_y, query_x


def test_scores_follow_the_classes_and_ignore_support_order_and_other_queries():
  learner, params, support_x, support_y, query_x = _task_and_learner()
  scores = np.asarray(learner.task_model_logits(params, support_x, support_y, query_x))
  assert scores.shape == (QUERIES, WAY) and np.isfinite(scores).all()
  # A class is the sum of its support embeddings: a permuted support set is the same
  # set (float sums in another order: equal to rounding, not bit for bit).
  order = np.random.default_rng(0).permutation(WAY * SHOT)
  permuted = learner.task_model_logits(params, support_x[order], support_y[order], query_x)
  np.testing.assert_allclose(permuted, scores, rtol=1e-5, atol=1e-5)
  # Each (class, query) pair is scored by the same network: renaming two classes swaps
  # their columns, with no weight tied to a label.
  swapped = np.where(support_y == 0, 1, np.where(support_y == 1, 0, support_y))
  renamed = np.asarray(learner.task_model_logits(params, support_x, swapped, query_x))
  np.testing.assert_allclose(renamed, scores[:, [1, 0, 2]], rtol=1e-5, atol=1e-5)
  # Layer norm, no batch statistics: a query alone is scored the same.
  for j in range(QUERIES):
    alone = learner.task_model_logits(params, support_x, support_y, query_x[j:j + 1])
    np.testing.assert_allclose(alone[0], scores[j], rtol=1e-5, atol=1e-5)


def test_the_loss_is_sung_et_al_s_squared_error_of_the_sigmoid_scores():
  learner, params, support_x, support_y, query_x = _task_and_learner()
  query_y = np.array([0, 2, 1, 1])
  task = Episodes(support_x, jnp.asarray(support_y), query_x, jnp.asarray(query_y))
  loss, accuracy = learner.task_loss({"params": params, "inner_lr": {}}, {}, task)
  scores = np.asarray(learner.task_model_logits(params, support_x, support_y, query_x),
                      np.float64)
  expected = np.mean((1 / (1 + np.exp(-scores)) - np.eye(WAY)[query_y]) ** 2)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert accuracy == np.mean(scores.argmax(-1) == query_y)


def test_relation_meta_trains_evaluates_and_adapts_to_other_class_counts(data_dir, tmp_path):
  config = meta_configs.get_config("quick")
  config.data_dir, config.algorithm = data_dir, "relation"
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert 0 <= metrics["test_accuracy"] <= 1
  assert len(set(metrics["test_accuracy_by_steps"].values())) == 1  # no inner steps
  again = train.evaluate_checkpoint(config, str(tmp_path), str(tmp_path / "eval"))
  assert again["test_accuracy"] == metrics["test_accuracy"]
  data = train.make_task_data(config)
  episodes = data.test_sampler(jax.random.PRNGKey(0), data.test, 1)
  keep = np.asarray(episodes.support_y[0]) < 3  # 3 of the run's 5 classes
  task = adapt.load(str(tmp_path)).adapt(np.asarray(episodes.support_x[0])[keep],
                                         np.asarray(episodes.support_y[0])[keep])
  assert task.predict(np.asarray(episodes.query_x[0])).probabilities.shape == (5, 3)
