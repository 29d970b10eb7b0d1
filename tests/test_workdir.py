"""Run folders: what counts as a run, and reuse of finished runs only with their config."""
import json

import pytest

from experiments.configs import finetune
from jaxtl import workdir as run_dir
from jaxtl.metrics import write_results


def test_a_folder_without_checkpoint_is_not_a_run_and_is_reused(tmp_path):
  first, second = finetune.get_config("quick"), finetune.get_config("quick")
  second.learning_rate = 0.5
  run_dir.prepare(first, str(tmp_path))
  run_dir.prepare(second, str(tmp_path))  # nothing ran: the new config replaces the old
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["learning_rate"] == 0.5
  (tmp_path / "checkpoints" / "10").mkdir(parents=True)  # now a run has made progress
  with pytest.raises(ValueError, match=r"\['learning_rate'\] differ"):
    run_dir.prepare(first, str(tmp_path))
  run_dir.prepare(second, str(tmp_path))  # the same config resumes


def test_finished_results_are_reused_only_for_their_config(tmp_path):
  config = finetune.get_config("quick")
  assert run_dir.finished_results(config, str(tmp_path)) is None
  write_results(str(tmp_path), config, {"test_accuracy": 0.5}, "finetune")
  assert run_dir.finished_results(config, str(tmp_path)) == {"test_accuracy": 0.5}
  config.data_dir = "elsewhere"  # how it executes: still the same run
  assert run_dir.finished_results(config, str(tmp_path)) == {"test_accuracy": 0.5}
  config.num_steps += 1
  with pytest.raises(ValueError, match=r"another config \(fields \['num_steps'\]"):
    run_dir.finished_results(config, str(tmp_path))


def test_runs_saved_before_a_field_was_added_or_removed_still_match():
  from experiments.configs import meta  # pylint: disable=g-import-not-at-top
  config = meta.get_config("sinusoid")
  saved = dict(json.loads(config.to_json_best_effort()), first_order=False)
  del saved["test_backtrack"]
  assert run_dir.config_diff(saved, config) == []
  assert run_dir.config_diff(dict(saved, first_order=True), config) == ["first_order"]
  config.test_backtrack = True
  assert run_dir.config_diff(saved, config) == ["test_backtrack"]


def test_old_runs_objective_defaults_are_the_objectives_options():
  """A run saved before objectives existed means the objectives' defaults: workdir keeps
  them as a literal (it sits below `jaxtl.objectives`), equal to OPTIONS."""
  from jaxtl import objectives  # pylint: disable=import-outside-toplevel
  want = {k: list(v) if isinstance(v, tuple) else v for k, v in objectives.OPTIONS.items()}
  assert run_dir.FIELD_DEFAULTS["objective_kwargs"] == want
