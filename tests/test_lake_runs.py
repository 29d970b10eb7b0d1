"""Lake et al.'s 20 one-shot classification runs (`jaxtl.data.lake_runs`): the table read
off their all_runs.zip, its tasks as jaxtl draws them, and how they are scored."""
import io
import json
import os
import zipfile

import jax
import numpy as np
import pytest
from PIL import Image

from experiments.configs import meta as meta_configs
from jaxtl.data import lake_runs, load_dataset
from jaxtl.errors import ConfigError
from jaxtl.meta import tasks, train
from jaxtl.report import find_runs


def _lake_config(data_dir):
  config = meta_configs.get_config("omniglot_20w1s_lake")
  config.data_dir, config.test_tasks = data_dir, "lake_runs"
  return config


def test_the_runs_are_twenty_within_alphabet_one_shot_tasks_of_the_evaluation_alphabets(
    data_dir):
  dataset = load_dataset("omniglot", "all", data_dir=data_dir, source="mirror")
  label_of = {name: i for i, name in enumerate(dataset.class_names)}
  assert len(lake_runs.RUNS) == 20
  assert len({r.alphabet for r in lake_runs.RUNS}) == 10  # two runs per alphabet
  for run in lake_runs.RUNS:
    labels = [label_of[n] for n in run.names()]
    assert len(set(labels)) == 20 and min(labels) >= 964  # evaluation characters only
    assert run.support_drawer != run.query_drawer


def test_the_sampler_gives_each_runs_drawings_in_its_class_order(data_dir):
  config = _lake_config(data_dir)
  data = train.make_task_data(config)
  episodes = data.test_sampler(jax.random.PRNGKey(0), data.test, 20)
  again = data.test_sampler(jax.random.PRNGKey(9), data.test, 20)  # fixed tasks: no draw
  np.testing.assert_array_equal(np.asarray(episodes.query_x), np.asarray(again.query_x))
  dataset = load_dataset("omniglot", "all", data_dir=data_dir, source="mirror")
  label_of = {name: i for i, name in enumerate(dataset.class_names)}
  for r, run in enumerate(lake_runs.RUNS):
    for k in (0, 7, 19):
      label = label_of[run.names()[k]]
      for images, drawer in ((episodes.support_x, run.support_drawer),
                             (episodes.query_x, run.query_drawer)):
        row = np.flatnonzero((dataset.labels == label)
                             & (dataset.metadata["drawer"] == drawer))[0]
        np.testing.assert_array_equal(np.asarray(images[r, k]), dataset.images[row])
  np.testing.assert_array_equal(np.asarray(episodes.support_y), np.tile(np.arange(20), (20, 1)))
  np.testing.assert_array_equal(np.asarray(episodes.query_y), np.tile(np.arange(20), (20, 1)))


@pytest.mark.parametrize("kind,count", [("lake_runs", 20), ("lake_drawers", 560)])
def test_fixed_tasks_are_scored_once_each_in_chunks_whatever_eval_tasks_says(data_dir, kind,
                                                                            count):
  """Each task scored once, chunk by chunk (eval_batch 16 does not divide 20 or 560), in
  the table's order: what the score sees of task t is the sampler's task t."""
  config = _lake_config(data_dir)
  config.algorithm, config.model_kwargs.pool, config.test_tasks = "protonet", "flatten", kind
  config.eval_tasks, config.eval_batch = 600, 16
  data = train.make_task_data(config)
  learner = train.make_learner(config)
  params, batch_stats = learner.init(jax.random.PRNGKey(0), data.test[0, :2])
  per_task = train.evaluate_per_task(config, learner, params, batch_stats, data.test,
                                     data.test_sampler)
  assert per_task.shape[0] == count
  rows = lambda e, _: (e.support_x[:, :, 14, :, 0], e.query_x[:, :, 14, :, 0])  # pixels
  seen = tasks.over_eval_tasks(config, data.test, data.test_sampler, rows)
  for t in (0, 17, count - 1):
    alone = data.test_sampler.take(t, data.test, 1)
    np.testing.assert_array_equal(seen[0][t], np.asarray(alone.support_x)[0, :, 14, :, 0])
    np.testing.assert_array_equal(seen[1][t], np.asarray(alone.query_x)[0, :, 14, :, 0])


def test_every_drawer_pair_of_the_runs_characters(data_dir):
  """`lake_drawers`: each alphabet's run characters once, with each ordered pair of
  distinct drawers among the runs' 8; the runs' own pairs are among them."""
  names = load_dataset("omniglot", "all", data_dir=data_dir, source="mirror").class_names
  classes, support, query = lake_runs.task_table(names, drawer_pairs="all")
  runs = lake_runs.task_table(names)
  assert classes.shape == (560, 20) and (support != query).all()
  assert max(support.max(), query.max()) == lake_runs.DRAWERS - 1
  tasks_ = {(tuple(c), s, q) for c, s, q in zip(classes, support, query)}
  assert len(tasks_) == 560
  assert {(tuple(c), s, q) for c, s, q in zip(*runs)} <= tasks_
  with pytest.raises(ConfigError, match="drawer_pairs='some'; valid: 'runs', 'all'"):
    lake_runs.task_table(names, drawer_pairs="some")


def _png(bits: np.ndarray) -> bytes:
  out = io.BytesIO()
  Image.fromarray(bits).save(out, format="PNG")  # bool: a 1-bit PNG, as Lake's
  return out.getvalue()


def test_read_runs_finds_every_png_of_a_runs_zip_among_the_mirrors_images(data_dir,
                                                                         tmp_path):
  """A zip laid out as Lake's all_runs.zip, made of the mirror's own 105x105 images for
  the first two runs of the table (test items shuffled, as Lake's are), reads back as
  those runs; a drawing from nowhere is an error."""
  with np.load(f"{data_dir}/omniglot/omniglot_105_bits.npz") as z:
    bits = np.unpackbits(z["bits"], axis=1, count=105 * 105).reshape(-1, 105, 105) > 0
    names, labels, drawers = list(z["character_names"]), z["labels"], z["drawer"]

  def image(name, drawer):
    return bits[np.flatnonzero((labels == names.index(name)) & (drawers == drawer))[0]]

  def write(path, runs, spoil=False):
    with zipfile.ZipFile(path, "w") as archive:
      for i, run in enumerate(runs):
        folder = f"run{i + 1:02d}"
        order = np.random.default_rng(i).permutation(20)
        lines = []
        for k, name in enumerate(run.names()):
          archive.writestr(f"{folder}/training/class{k + 1:02d}.png",
                           _png(image(name, run.support_drawer)))
          item = f"{folder}/test/item{order[k] + 1:02d}.png"
          query = image(name, run.query_drawer).copy()
          if spoil and k == 3:
            query[50:55, 50:55] = ~query[50:55, 50:55]
          archive.writestr(item, _png(query))
          lines.append(f"{item} {folder}/training/class{k + 1:02d}.png")
        archive.writestr(f"{folder}/class_labels.txt", "\n".join(sorted(lines)) + "\n")

  write(tmp_path / "runs.zip", lake_runs.RUNS[:2])
  assert lake_runs.read_runs(str(tmp_path / "runs.zip"), data_dir) == lake_runs.RUNS[:2]
  write(tmp_path / "spoilt.zip", lake_runs.RUNS[:1], spoil=True)
  with pytest.raises(ConfigError, match="is none of the mirror's evaluation images"):
    lake_runs.read_runs(str(tmp_path / "spoilt.zip"), data_dir)


def test_lake_runs_in_another_shape_or_split_is_a_clear_error(data_dir):
  config = _lake_config(data_dir)
  config.way = 5
  with pytest.raises(ConfigError, match="20-way 1-shot with one query per character; got "
                                        "way=5"):
    train.make_task_data(config)
  config = _lake_config(data_dir)
  config.eval_split = "val"
  with pytest.raises(ConfigError, match="are not among the evaluation classes"):
    train.make_task_data(config)
  config = _lake_config(data_dir)
  config.train_tasks = "lake_runs"
  with pytest.raises(ConfigError, match="train_tasks='lake_runs' names Lake's test tasks"):
    train.make_task_data(config)
  with pytest.raises(ConfigError, match="test_tasks='lake_drawers' needs the characters' names"):
    tasks.make_sampler("lake_drawers", 20, 1, 1, np.zeros(659))


def test_runs_are_compared_with_the_other_drawer_pairs_of_their_own_alphabet():
  """The Lake table's last lines: per alphabet, its two runs' error minus the mean error of
  its other 54 drawer-pair tasks (the runs' own pairs left out), t-interval over the 10
  alphabets; and the runs' errors counted of 400."""
  from jaxtl.studies import lake_tables  # pylint: disable=import-outside-toplevel
  alphabets = lake_runs.ALPHABETS
  pair_error = {a: 0.1 + 0.02 * i for i, a in enumerate(alphabets)}
  gap = {a: 0.04 + 0.002 * i for i, a in enumerate(alphabets)}  # 4.9 points on average
  own = {(r.alphabet, r.support_drawer, r.query_drawer) for r in lake_runs.RUNS}
  every = [1 - (0.9 if (t.alphabet, t.support_drawer, t.query_drawer) in own
                else pair_error[t.alphabet]) for t in lake_runs.tasks("all")]
  runs = [1 - (pair_error[r.alphabet] - gap[r.alphabet]) for r in lake_runs.RUNS]

  def result(kind, per_task):
    return {"kind": "meta", "config": {"class_split": "lake", "way": 20, "test_shot": 1,
                                       "test_tasks": kind, "algorithm": "protonet"},
            "metrics": {"test_accuracy": float(np.mean(per_task)), "test_accuracy_ci95": 0.0,
                        "test_accuracy_per_task": per_task}}
  cells = lake_tables.lake_cells([("r/a/runs", result("lake_runs", runs)),
                                   ("r/a/pairs", result("lake_drawers", every))])
  cells = {"r/a": {k: v for c in cells.values() for k, v in c.items()}}
  lines = lake_tables._runs_against_drawer_pairs(cells)  # pylint: disable=protected-access
  wrong = round(400 * np.mean([pair_error[r.alphabet] - gap[r.alphabet]
                               for r in lake_runs.RUNS]))
  # sd of the gaps 0.2 x 3.028 = 0.606 points; t(0.975, 9) x 0.606 / sqrt(10) = +- 0.4
  assert lines[-1] == f"| `r/a` | {wrong} | **-4.9 ± 0.4** |"


def test_lakes_own_baseline_scores_his_38_8_percent_through_the_table(data_dir):
  """End to end, the table's characters, drawers and roles: Lake's demo classifier
  (modified Hausdorff distance between the centred ink pixels of each test item and each
  training image, 105x105; `demo_classification.py` of his repository, which prints
  38.8% error) run on the runs as jaxtl reads them gives his number."""
  from scipy.spatial.distance import cdist  # pylint: disable=import-outside-toplevel
  with np.load(f"{data_dir}/omniglot/omniglot_105_bits.npz") as z:
    names, labels, drawers = list(z["character_names"]), z["labels"], z["drawer"]
    bits = z["bits"]

  def points(name, drawer):
    row = np.flatnonzero((labels == names.index(name)) & (drawers == drawer))[0]
    ink = ~(np.unpackbits(bits[row], count=105 * 105).reshape(105, 105) > 0)
    p = np.argwhere(ink).astype(float)
    return p - p.mean(0)

  def hausdorff(a, b):
    d = cdist(a, b)
    return max(d.min(1).mean(), d.min(0).mean())

  errors = []
  for run in lake_runs.RUNS:
    train = [points(n, run.support_drawer) for n in run.names()]
    test = [points(n, run.query_drawer) for n in run.names()]
    guess = [np.argmin([hausdorff(t, s) for s in train]) for t in test]
    errors.append(100 * np.mean(np.array(guess) != np.arange(20)))
  assert abs(np.mean(errors) - 38.8) < 0.1


def test_a_support_set_batch_norm_evaluation_is_a_column_of_its_own():
  """`--config.batch_norm=support` re-evaluations of Lake's runs go to their own column,
  not over the transductive ones (the same tasks, another normalisation)."""
  from jaxtl.studies import lake_tables  # pylint: disable=import-outside-toplevel

  def result(accuracy, **config):
    return {"kind": "meta", "evaluated_by": "experiments.meta_eval",
            "config": {"class_split": "lake", "way": 20, "test_shot": 1,
                       "test_tasks": "lake_runs", "algorithm": "protonet", **config},
            "metrics": {"test_accuracy": accuracy, "test_accuracy_ci95": 0.0,
                        "test_accuracy_per_task": [accuracy] * 20}}
  cells = lake_tables.lake_cells([
      ("r/a/meta_eval_lake_runs", result(0.9)),
      ("r/a/meta_eval_lake_runs_support_bn", result(0.8, batch_norm="support"))])
  assert {k: v["metrics"]["test_accuracy"] for k, v in cells["r/a"].items()} == {
      ("test", "lake_runs", "transductive"): 0.9, ("test", "lake_runs", "support"): 0.8}



def test_a_shot_sweeps_baseline_on_lakes_split_is_a_row_paired_with_the_runs(tmp_path):
  """A shot sweep's baseline cells on Lake's split that kept each task's score fill one
  row of the Lake table, one column per sibling sweep's test tasks, and are paired with
  the meta-learned runs scored on the same tasks; a cell without them is no row."""
  from jaxtl.studies import lake_tables  # pylint: disable=import-outside-toplevel
  tasks_config = {"dataset": "omniglot", "class_split": "lake", "split_seed": 1,
                  "eval_seed": 3, "eval_tasks": 4, "way": 20, "test_shot": 1,
                  "test_query": 1, "num_val_alphabets": 5}

  def sweep(kind, per_task, keep=True):
    cell = {"accuracy": float(np.mean(per_task)), "ci95": float(np.std(per_task)),
            "tasks": len(per_task)}
    return {"kind": "shots", "metrics": {"cosine_20w1s": dict(cell, per_task=per_task)
                                         if keep else cell},
            "config": {"tasks": dict(tasks_config, test_tasks=kind), "query": 1,
                       "baselines": ["cosine"], "val_tasks": 100,
                       "pretrain": {"num_steps": 3000}}}
  meta = {"kind": "meta", "config": dict(tasks_config, test_tasks="alphabet",
                                         eval_split="test", algorithm="protonet", meta_batch=1,
                                         shot=1, query=1),
          "metrics": {"test_accuracy": 0.75, "test_accuracy_ci95": 0.0,
                      "test_accuracy_per_task": [0.7, 0.8, 0.7, 0.8],
                      "meta_iterations": 10}}
  for folder, result in (("pp/alphabet", sweep("alphabet", [0.6, 0.7, 0.6, 0.7])),
                         ("pp/random", sweep("random", [0.9, 0.9, 0.9, 0.9])),
                         ("old", sweep("alphabet", [0.5] * 4, keep=False)), ("proto", meta)):
    os.makedirs(tmp_path / folder)
    (tmp_path / folder / "results.json").write_text(json.dumps(result))
  cells = lake_tables.lake_cells(find_runs(str(tmp_path)))
  assert sorted(cells) == ["pp", "proto"]
  assert sorted(k[1] for k in cells["pp"]) == ["alphabet", "random"]
  table = lake_tables.lake_table(str(tmp_path)).splitlines()
  row = next(line for line in table if line.startswith("| cosine head (Baseline++)"))
  # the cells' own accuracy and CI (here the tasks' spread, 0.05 for 0.6, 0.7, 0.6, 0.7)
  assert row.split(" | ")[2:4] == ["35.0 ± 5.0", "10.0 ± 0.0"], row
  assert "pre-training's statistics" in table[0]
  # paired over the same 4 tasks: the run's error minus the row's, -10 points on each
  assert "| 2 `proto` | **-10.0 ± 0.0** |" in table


def test_the_readmes_two_protocols_table_takes_each_row_from_its_runs(tmp_path):
  """The README's table: per method, its MAML-split 20-way 1-shot error (a meta run, or a
  shot sweep's baseline, never the sweep's re-scored checkpoint), and on Lake's split the
  run trained as the first rows were (random episodes, no warps), within one alphabet and
  on his runs (CI over the 10 alphabets); the published rows above."""
  from jaxtl.studies import lake_tables  # pylint: disable=import-outside-toplevel
  def meta(folder, accuracy, per_task=None, evaluated_by=None, **config):
    c = {"dataset": "omniglot", "algorithm": "protonet", "model": "conv4", "way": 20,
         "shot": 1, "test_shot": 1, "query": 1, "meta_batch": 1, **config}
    metrics = {"test_accuracy": accuracy, "test_accuracy_ci95": 0.01, "meta_iterations": 5}
    if per_task is not None:
      metrics["test_accuracy_per_task"] = per_task
    write(folder, {"kind": "meta", "config": c, "metrics": metrics,
                   **({"evaluated_by": evaluated_by} if evaluated_by else {})})

  def write(folder, result):
    os.makedirs(tmp_path / folder)
    (tmp_path / folder / "results.json").write_text(json.dumps(result))
  meta("maml_split", 0.93)
  write("shots", {"kind": "shots", "config": {"tasks": {"class_split": "maml"}},
                  "metrics": {"cosine_20w1s": {"accuracy": 0.9, "ci95": 0.02},
                              "protonet_20w1s": {"accuracy": 0.5, "ci95": 0.02}}})
  meta("lake", 0.75, class_split="lake", test_tasks="alphabet")
  runs = [0.9] * len(lake_runs.RUNS)
  meta("lake/runs", 0.9, runs, "experiments.meta_eval", class_split="lake",
       test_tasks="lake_runs")
  meta("a_seed1", 0.5, class_split="lake", test_tasks="alphabet", seed=1)  # first, not the row
  meta("lake_warped", 0.5, class_split="lake", test_tasks="alphabet",
       train_affine={"rotate_deg": 10.0, "scale": (0.8, 1.2), "translate": 0.02})
  # A shot sweep on Lake's split whose tasks config names MAML (the meta config it copies):
  # its baseline is Baseline++'s row, never MAML's.
  write("sweep/alphabet", {"kind": "shots", "config": {
      "tasks": {"class_split": "lake", "algorithm": "maml", "test_tasks": "alphabet"},
      "query": 1, "baselines": ["cosine"], "val_tasks": 10, "pretrain": {"num_steps": 3}},
      "metrics": {"cosine_20w1s": {"accuracy": 0.6, "ci95": 0.03, "per_task": [0.6]}}})
  table = lake_tables.protocols_table(str(tmp_path)).splitlines()
  assert "| ProtoNets, jaxtl | 7.0 ± 1.0 (5 it.) | 25.0 ± 1.0 (5 it.) | 10.0 ± 0.0 |" in table
  assert "| Baseline++ (cosine head), jaxtl | 10.0 ± 2.0 | 40.0 ± 3.0 |  |" in table
  assert "| siamese network (Koch et al. 2015) | | | 8.0 |" in table
  assert not any(line.startswith(("| MAML, jaxtl", "| black box")) for line in table)
