"""Omniglot as Lake et al. (2015) define the one-shot challenge: new alphabets, every task's
characters from one alphabet, support and query drawings by different drawers."""
import jax
import numpy as np
import pytest

from experiments.configs import meta as meta_configs
from jaxtl.data import load_dataset
from jaxtl.errors import ConfigError
from jaxtl.meta import tasks, train
from jaxtl.studies import lake_tables


def _coded(num_classes: int, drawers: int):
  """Class-major images whose pixels say (class, drawer): image [c, e] = 1000 c + e."""
  codes = 1000 * np.arange(num_classes)[:, None] + np.arange(drawers)[None, :]
  return np.broadcast_to(codes[:, :, None, None, None], (num_classes, drawers, 2, 2, 1)
                         ).astype(np.float32)


def _decode(images):
  code = np.asarray(images)[..., 0, 0, 0].astype(int)
  return code // 1000, code % 1000


@pytest.mark.parametrize("way,shot,query", [(5, 1, 1), (4, 2, 3), (3, 1, 5)])
def test_within_alphabet_tasks_share_an_alphabet_and_keep_drawers_apart(way, shot, query):
  groups = np.array([0] * 6 + [1] * 3 + [2] * 7 + [3] * 2)  # 18 classes in 4 alphabets
  data = _coded(len(groups), 20)
  sampler = tasks.make_sampler("alphabet", way, shot, query, groups)
  episodes = sampler(jax.random.PRNGKey(0), data, 200)
  seen_groups = set()
  for b in range(200):
    s_cls, s_drawer = _decode(episodes.support_x[b])
    q_cls, q_drawer = _decode(episodes.query_x[b])
    classes = s_cls.reshape(way, shot)[:, 0]
    assert len(set(classes)) == way  # distinct characters
    assert len(set(groups[classes])) == 1  # one alphabet
    seen_groups.add(int(groups[classes[0]]))
    # Labels name the classes in the task's order, support and query alike.
    np.testing.assert_array_equal(s_cls, np.repeat(classes, shot))
    np.testing.assert_array_equal(q_cls, np.repeat(classes, query))
    np.testing.assert_array_equal(episodes.support_y[b], np.repeat(np.arange(way), shot))
    np.testing.assert_array_equal(episodes.query_y[b], np.repeat(np.arange(way), query))
    # The same drawers for every class of the task; support's and query's disjoint.
    support_drawers = s_drawer.reshape(way, shot)
    query_drawers = q_drawer.reshape(way, query)
    assert (support_drawers == support_drawers[0]).all()
    assert (query_drawers == query_drawers[0]).all()
    assert not set(support_drawers[0]) & set(query_drawers[0])
    assert len(set(support_drawers[0]) | set(query_drawers[0])) == shot + query
  # Only alphabets with `way` characters; each of them drawn.
  assert seen_groups == {g for g in range(4) if np.sum(groups == g) >= way}


def test_an_alphabet_too_small_for_the_way_is_a_clear_error():
  with pytest.raises(ConfigError, match=r"No alphabet has 8 classes \(the largest has 7\)"):
    tasks.make_sampler("alphabet", 8, 1, 1, np.array([0] * 7 + [1] * 3))
  with pytest.raises(ConfigError, match=r"Unknown task kind 'alphabets'; valid: "
                                        r"\('random', 'alphabet', 'lake_runs', 'lake_drawers'\)"):
    tasks.make_sampler("alphabets", 5, 1, 1, np.zeros(10))


def test_lake_split_holds_out_whole_background_alphabets(data_dir):
  dataset = load_dataset("omniglot", "all", data_dir=data_dir, source="mirror")
  splits = tasks.class_splits(dataset, "lake", seed=1, num_val_alphabets=5)
  alphabet = {part: set(tasks.class_alphabets(dataset, c)) for part, c in splits.items()}
  assert len(alphabet["val"]) == 5 and len(alphabet["train"]) == 25
  assert len(alphabet["test"]) == 20 and not alphabet["train"] & alphabet["val"]
  assert max(alphabet["train"] | alphabet["val"]) < min(alphabet["test"])  # 30 background
  assert len(splits["train"]) + len(splits["val"]) == 964 and len(splits["test"]) == 659
  assert (splits["test"] >= 964).all()  # no background character is ever a test class
  with pytest.raises(ConfigError, match="num_val_alphabets holds out background alphabets"):
    tasks.class_splits(dataset, "maml", num_val_alphabets=5)


def test_lake_variant_draws_20_way_tasks_of_one_evaluation_alphabet(data_dir):
  config = meta_configs.get_config("omniglot_20w1s_lake")
  config.data_dir = data_dir
  data = train.make_task_data(config)
  # Example e of every class is drawer e's drawing (the mirror's `drawer`).
  dataset = load_dataset("omniglot", "all", data_dir=data_dir, source="mirror")
  first_test_class = 964
  for drawer in (0, 7, 19):
    row = np.flatnonzero((dataset.labels == first_test_class)
                         & (dataset.metadata["drawer"] == drawer))[0]
    np.testing.assert_array_equal(np.asarray(data.test[0, drawer]), dataset.images[row])
  episodes = data.test_sampler(jax.random.PRNGKey(3), data.test, 20)
  flat = np.asarray(data.test).reshape(-1, *data.test.shape[2:])
  for b in range(20):
    index = [int(np.flatnonzero((flat == image).all(axis=(1, 2, 3)))[0])
             for image in np.asarray(episodes.support_x[b])]
    classes = np.array(index) // 20
    assert len(set(classes)) == 20
    assert len(set(data.test_groups[classes])) == 1  # every character of one alphabet
  assert data.test_groups.min() >= 30  # evaluation alphabets only


def test_alphabet_tasks_need_the_drawer_order():
  config = meta_configs.get_config("quick")
  config.dataset, config.class_split, config.num_train_classes = "digits", "random", 6
  config.way, config.test_tasks = 2, "alphabet"
  with pytest.raises(ConfigError, match="alphabet"):
    train.make_task_data(config)


def test_error_rate_is_reported_beside_accuracy():
  config = meta_configs.get_config("quick")
  learner = train.make_learner(config)
  per_task = np.array([[0.2, 0.9], [0.4, 0.7], [0.6, 0.8]])
  config.test_inner_steps, config.eval_steps = 1, (0, 1)
  metrics = train.summarize(config, learner, per_task)
  assert metrics["test_accuracy"] == pytest.approx(0.8)
  assert metrics["test_error"] == pytest.approx(0.2)
  assert metrics["test_accuracy_per_task"] == [0.9, 0.7, 0.8]  # each task, for pairing


def test_runs_scored_on_the_same_tasks_are_compared_task_by_task():
  """The Lake table's paired differences: error of one run minus another's, over the same
  tasks (the same task fields), with the t-interval over the tasks; runs on other tasks
  are not paired."""
  def run(name, per_task, **config):
    c = {"class_split": "lake", "way": 20, "test_shot": 1, "test_tasks": "alphabet",
         "eval_seed": 5, "algorithm": "protonet", **config}
    return (name, {"kind": "meta", "config": c, "metrics": {
        "test_accuracy": float(np.mean(per_task)), "test_accuracy_ci95": 0.01,
        "test_accuracy_per_task": per_task}})
  a = [0.8, 0.9, 0.7, 0.6]
  b = [0.7, 0.85, 0.65, 0.5]  # 0.1, 0.05, 0.05, 0.1 more error
  cells = lake_tables.lake_cells([run("r/a", a), run("r/b", b), run("r/c", b, eval_seed=6)])
  lines = lake_tables._paired_rows(cells)  # pylint: disable=protected-access
  assert lines[1].startswith("Paired over the same 4 within-alphabet test tasks: error of the "
                             "row minus error of the column")
  # mean 7.5 points; sd 2.887 points, t(0.975, 3) = 3.182: +- 4.6, beyond 0: bold
  rows = [line for line in lines if line.startswith("| ")]
  assert rows == ["| row minus column | 1 | 2 |", "| 1 `r/a` |  |  |",
                  "| 2 `r/b` | **+7.5 ± 4.6** |  |", "| 3 `r/c` |  |  |"]  # c: other tasks
  assert not any("validation" in line for line in lines)  # none scored there
  # A re-evaluation fine-tuned on each support is a row of its own, not a duplicate of
  # its run's cell (which the first of them would hide).
  tuned = run("r/a/meta_eval_tuned", b, support_steps=10, support_lr=0.001)
  tuned[1]["evaluated_by"] = "experiments.meta_eval"
  cells = lake_tables.lake_cells([run("r/a", a), tuned])
  assert sorted(cells) == ["r/a", "r/a + support fine-tuning, 10 Adam steps of 0.001"]


def test_maml_split_trains_on_most_characters_of_the_evaluation_alphabets(data_dir):
  """Why Lake's protocol matters (docs/meta_learning.md): MAML's random split of
  characters puts 491 of the 659 characters of Omniglot's evaluation alphabets into
  meta-training, so its "new characters" are mostly seen ones; Lake's puts none."""
  dataset = load_dataset("omniglot", "all", data_dir=data_dir, source="mirror")
  maml = tasks.class_splits(dataset, "maml", seed=1)
  assert (np.sum(maml["train"] >= 964), np.sum(maml["test"] >= 964)) == (491, 168)
  lake = tasks.class_splits(dataset, "lake")
  assert np.sum(lake["train"] >= 964) == 0 and len(lake["test"]) == 659


def test_affine_training_warps_every_image_its_own_way_from_the_episodes_key():
  """Koch et al.'s distortions (`train_affine`): labels untouched, support and query images
  warped, each differently, the same again from the same key; all zero: no wrapper."""
  rng = np.random.default_rng(0)
  data = jax.numpy.asarray((rng.random((6, 4, 12, 12, 1)) > 0.7).astype(np.float32))
  plain = tasks.make_sampler("random", 3, 1, 2)
  assert tasks.with_affine(plain) is plain
  warped = tasks.with_affine(plain, rotate_deg=10.0, scale=(0.8, 1.2), translate=0.1)
  key = jax.random.PRNGKey(3)
  a, b = warped(key, data, 4), warped(key, data, 4)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # The episode's own images, before the warp (the sampler's key is split the same way).
  original = plain(jax.random.split(key, 3)[0], data, 4)
  np.testing.assert_array_equal(np.asarray(a.support_y), np.asarray(original.support_y))
  np.testing.assert_array_equal(np.asarray(a.query_y), np.asarray(original.query_y))
  moved = np.abs(np.asarray(a.query_x) - np.asarray(original.query_x)).sum(axis=(2, 3, 4))
  assert (moved > 0).all()
  assert a.support_x.shape == original.support_x.shape
  with pytest.raises(ConfigError, match="scale"):
    tasks.with_affine(plain, scale=(1.2, 0.8))


def test_protonets_train_on_more_ways_than_they_are_tested_on(data_dir, tmp_path):
  """Snell et al. train Omniglot's ProtoNets on 60-way episodes and test 5- or 20-way;
  `train_way` does that for protonet, and is an error for a learner with an N-way head."""
  config = meta_configs.get_config("quick")
  config.data_dir, config.algorithm, config.train_way = data_dir, "protonet", 12
  data = train.make_task_data(config)
  episodes = data.train_sampler(jax.random.PRNGKey(0), data.train, 2)
  assert episodes.support_x.shape[1] == 12 and int(episodes.support_y.max()) == 11
  assert data.test_sampler(jax.random.PRNGKey(0), data.test, 2).support_x.shape[1] == 5
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert 0 <= metrics["test_accuracy"] <= 1
  config.algorithm = "maml"
  with pytest.raises(ConfigError, match="train_way=12 differs from way=5"):
    train.make_task_data(config)
