"""Ensembles of meta-trained runs (`jaxtl.meta.ensemble`, `meta_eval --ensemble`)."""
import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import meta as meta_configs
from jaxtl.errors import ConfigError
from jaxtl.meta import ensemble, train
from tests.conftest import REPO


def test_the_average_probability_decides_not_the_vote():
  """One query, three members: two lean to class 1 (0.6), one is sure of class 0 (0.9).
  A vote says 1; the average probability, (0.9 + 0.4 + 0.4) / 3 = 0.567 for class 0,
  says 0."""
  probs = jnp.asarray([[[[0.9, 0.1]]], [[[0.4, 0.6]]], [[[0.4, 0.6]]]])  # (3, 1 task, 1, 2)
  got, each = ensemble.accuracies(probs, jnp.asarray([[0]]))
  assert float(got[0]) == 1.0 and np.asarray(each)[:, 0].tolist() == [1.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
  """A MAML and a ProtoNets run of the quick config (6 meta-iterations each)."""
  root = tmp_path_factory.mktemp("runs")
  config = meta_configs.get_config("quick")
  config.data_dir = data_dir
  folders = {}
  for algorithm in ("maml", "protonet"):
    c = config.copy_and_resolve_references()
    c.algorithm = algorithm
    folders[algorithm] = str(root / algorithm)
    train.train_and_evaluate(c, folders[algorithm])
  return config, folders


def _own(folder):
  with open(os.path.join(folder, "results.json")) as f:
    return json.load(f)["metrics"]["test_accuracy_per_task"]


def test_members_score_as_their_own_evaluation_task_by_task(runs, tmp_path):
  """Each member is adapted as its own meta_eval adapts it (MAML's inner steps, ProtoNets'
  prototypes) on the same tasks: its per-task accuracy inside the ensemble is its own."""
  config, folders = runs
  members = [folders["maml"], folders["protonet"]]
  metrics = ensemble.evaluate_ensemble(config, members, str(tmp_path))
  for folder in members:
    np.testing.assert_allclose(metrics["member_test_accuracy_per_task"][folder], _own(folder),
                               atol=1e-6)
  assert metrics["eval_tasks"] == config.eval_tasks and 0 <= metrics["test_accuracy"] <= 1
  with open(tmp_path / "results.json") as f:
    saved = json.load(f)
  assert saved["config"]["ensemble"] == members and saved["evaluated_by"] == \
      "experiments.meta_eval"


def test_an_ensemble_of_one_run_twice_is_that_run(runs, tmp_path):
  config, folders = runs
  metrics = ensemble.evaluate_ensemble(config, [folders["protonet"]] * 2, str(tmp_path))
  np.testing.assert_allclose(metrics["test_accuracy_per_task"], _own(folders["protonet"]),
                             atol=1e-6)


def test_the_configs_batch_norm_mode_holds_for_every_member(runs, tmp_path):
  """`--config.batch_norm=support` scores an ensemble's members as it scores one run
  (`evaluate_checkpoint`), not with the mode each member trained with."""
  config, folders = runs
  config = config.copy_and_resolve_references()
  config.batch_norm, config.algorithm = "support", "protonet"
  one = train.evaluate_checkpoint(config, folders["protonet"], str(tmp_path / "one"))
  both = ensemble.evaluate_ensemble(config, [folders["protonet"]] * 2, str(tmp_path / "two"))
  np.testing.assert_allclose(both["test_accuracy_per_task"], one["test_accuracy_per_task"],
                             atol=1e-6)
  assert one["test_accuracy_per_task"] != _own(folders["protonet"])  # the mode mattered


def test_test_time_views_that_warp_nothing_change_nothing(runs, tmp_path):
  """Test-time augmentation of one run: with warps of zero range, each view is the task
  itself, so the average over views is the run's own evaluation."""
  config, folders = runs
  config = config.copy_and_resolve_references()
  config.test_affine.views = 3
  metrics = ensemble.evaluate_ensemble(config, [folders["maml"]], str(tmp_path))
  np.testing.assert_allclose(metrics["test_accuracy_per_task"], _own(folders["maml"]),
                             atol=1e-6)


def test_bad_ensembles_are_clear_errors(runs, tmp_path):
  config, folders = runs
  with pytest.raises(ConfigError, match="at least 2 runs or test_affine.views >= 2"):
    ensemble.evaluate_ensemble(config, [folders["maml"]], str(tmp_path))
  warped = config.copy_and_resolve_references()
  warped.test_affine.views, warped.test_affine.scale = 2, (1.2, 0.8)
  with pytest.raises(ConfigError, match=r"test_affine: .*scale=\(1.2, 0.8\)"):
    ensemble.evaluate_ensemble(warped, [folders["maml"]], str(tmp_path))
  with pytest.raises(ConfigError, match="test_affine.views=2: evaluate with"):
    train.evaluate_checkpoint(warped, folders["maml"], str(tmp_path))
  with pytest.raises(ConfigError, match="test_affine.views=2: test-time augmentation is"):
    train.train_and_evaluate(warped, str(tmp_path / "new"))
  other = config.copy_and_resolve_references()
  other.way = config.way + 1  # MAML's head answers the ways it was trained with
  with pytest.raises(ConfigError, match="way=5; the tasks are way=6"):
    ensemble.evaluate_ensemble(other, [folders["maml"], folders["protonet"]], str(tmp_path))
  other = config.copy_and_resolve_references()
  other.split_seed = config.split_seed + 1  # other classes held out: members trained on some
  with pytest.raises(ConfigError, match="split_seed=1; the tasks are split_seed=2"):
    ensemble.evaluate_ensemble(other, [folders["maml"], folders["protonet"]], str(tmp_path))
  with pytest.raises(ConfigError, match="no meta-learning run"):
    ensemble.evaluate_ensemble(config, [folders["maml"], str(tmp_path)], str(tmp_path))
  # From the command line: an ensemble without --outdir would replace a run's results.
  out = subprocess.run(
      [sys.executable, "-m", "experiments.meta_eval",
       "--config=experiments/configs/meta.py:quick", f"--config.data_dir={config.data_dir}",
       f"--workdir={folders['maml']}", f"--ensemble={folders['protonet']}"],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode != 0 and "need --outdir" in out.stderr, out.stderr[-2000:]
