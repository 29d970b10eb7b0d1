"""Transfer baselines on episodic tasks (jaxtl.meta.baselines): closed forms at step 0,
and LP-FT's probe phase equal to the linear probe."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtl.meta import tasks
from jaxtl.meta.baselines import Baseline
from jaxtl.models import build_model
from tests.reference import float64

WAYS = 3


@pytest.fixture(autouse=True)
def in_float64():
  """Every computation in float64: the baselines' two paths (features once, or the whole
  network) and the NumPy references then agree far below any gap between two logits, on
  any CPU, so labels compare exactly."""
  with float64():
    yield


@pytest.fixture
def setting():
  """A random 8-feature Conv4 with non-trivial running averages and 4 tasks, float64."""
  model = build_model("conv4", num_classes=7, features=8, conv="im2col")
  x = jax.random.uniform(jax.random.PRNGKey(0), (10, 28, 28, 1), jnp.float64)
  variables = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64),  # flax inits float32
                                     model.init(jax.random.PRNGKey(1), x, train=False))
  _, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
  data = jax.random.uniform(jax.random.PRNGKey(2), (6, 5, 28, 28, 1), jnp.float64)
  episodes = tasks.sample_classification(jax.random.PRNGKey(3), data, 4, WAYS, 2, 3)
  batch_stats = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), updated["batch_stats"])
  return model, variables["params"], batch_stats, episodes


def _accuracy(name, setting, steps, **kw):
  model, params, batch_stats, episodes = setting
  baseline = Baseline(name, model.clone(num_classes=WAYS, **kw.pop("model", {})), WAYS, **kw)
  return np.asarray(baseline.evaluate_tasks(params, batch_stats, episodes, steps, lr=0.5,
                                            backtrack=True))


def _features(setting):
  model, params, batch_stats, episodes = setting
  body = {k: v for k, v in params.items() if k != "head"}
  embed = lambda x: model.clone(num_classes=0).apply({"params": body, "batch_stats": batch_stats},
                                                     x, train=False)
  return jax.vmap(embed)(episodes.support_x), jax.vmap(embed)(episodes.query_x), episodes


def _class_means(support, labels):
  return np.stack([support[labels == c].mean(0) for c in range(WAYS)])


def test_nearest_class_mean_is_the_closest_mean_in_feature_space(setting):
  support, query, episodes = _features(setting)
  expected = []
  for s, sy, q, qy in zip(support, episodes.support_y, query, episodes.query_y):
    means = _class_means(np.asarray(s), np.asarray(sy))
    distances = ((np.asarray(q)[:, None] - means) ** 2).sum(-1)
    expected.append(np.mean(distances.argmin(1) == np.asarray(qy)))
  got = _accuracy("ncm", setting, 2)
  np.testing.assert_allclose(got, np.repeat(np.asarray(expected)[:, None], 3, 1), atol=1e-6)


def test_cosine_head_starts_at_the_nearest_class_mean_by_angle(setting):
  support, query, episodes = _features(setting)
  expected = []
  for s, sy, q, qy in zip(support, episodes.support_y, query, episodes.query_y):
    means = _class_means(np.asarray(s), np.asarray(sy))
    q = np.asarray(q)
    cosine = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
        means / np.linalg.norm(means, axis=1, keepdims=True)).T
    expected.append(np.mean(cosine.argmax(1) == np.asarray(qy)))
  got = _accuracy("cosine", setting, 0, model={"head": "cosine"})
  np.testing.assert_allclose(got[:, 0], expected, atol=1e-6)


def test_a_zero_head_predicts_class_zero_and_lp_ft_starts_where_the_probe_ends(setting):
  *_, episodes = setting
  probe = _accuracy("linear_probe", setting, 4)
  class0 = np.mean(np.asarray(episodes.query_y) == 0, axis=1)  # argmax of equal logits: 0
  np.testing.assert_allclose(probe[:, 0], class0, atol=1e-6)
  for steps in (1, 4):
    lp_ft = _accuracy("lp_ft", setting, 0, probe_steps=steps, probe_lr=0.5)
    np.testing.assert_array_equal(lp_ft[:, 0], probe[:, steps])


def test_unknown_baseline_is_a_clear_error(setting):
  with pytest.raises(ValueError, match="Unknown baseline 'knn'; valid"):
    Baseline("knn", setting[0], WAYS)
