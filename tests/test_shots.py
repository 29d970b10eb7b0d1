"""The shot sweep (jaxtl.studies.shots): end to end on its quick variant, resumable, and a
meta-learned checkpoint scored as meta_eval scores it."""
import json
import os
import shutil

import pytest

from experiments.configs import finetune as finetune_configs
from experiments.configs import meta as meta_configs
from experiments.configs import shots as shots_configs
from jaxtl import cache
from jaxtl.errors import ConfigError
from jaxtl.finetune import trainer
from jaxtl.meta import train
from jaxtl.studies import shots


def test_quick_sweep_resumes_and_scores_a_checkpoint_as_meta_eval(data_dir, tmp_path):
  run = str(tmp_path / "protonet")
  meta = meta_configs.get_config("quick")
  meta.data_dir, meta.algorithm = data_dir, "protonet"
  train.train_and_evaluate(meta, run)
  config = shots_configs.get_config("quick")
  config.tasks.data_dir = data_dir
  config.checkpoints = (("protonet", run),)
  cells = shots.run(config, str(tmp_path / "sweep"))
  assert set(cells) == {f"{b}_5w1s" for b in config.baselines} | {"protonet_5w1s"}
  for name, cell in cells.items():
    assert 0 <= cell["accuracy"] <= 1 and cell["tasks"] == config.tasks.eval_tasks, name
    assert len(cell["per_task"]) == cell["tasks"], name  # each task's score, kept in order
    assert abs(sum(cell["per_task"]) / cell["tasks"] - cell["accuracy"]) < 1e-6, name
  assert cells["lp_ft_5w1s"]["steps"] <= config.steps.lp_ft
  # meta_eval of the checkpoint on the same tasks (10 tasks, one chunk, 1 shot, 1 query).
  meta.eval_tasks, meta.eval_batch = config.tasks.eval_tasks, config.tasks.eval_batch
  evaluated = train.evaluate_checkpoint(meta, run, str(tmp_path / "eval"))
  assert cells["protonet_5w1s"]["accuracy"] == evaluated["test_accuracy"]
  # A run in progress (no final variables) is scored from its latest checkpoint, here the
  # last step's, and named as in progress.
  unfinished = str(tmp_path / "unfinished")
  shutil.copytree(run, unfinished)
  shutil.rmtree(os.path.join(unfinished, "variables"))
  cell = shots.checkpoint_cell(config, unfinished, 1)
  assert cell["accuracy"] == cells["protonet_5w1s"]["accuracy"]
  assert (cell["meta_iterations"], cell["num_steps"]) == (meta.num_steps, meta.num_steps)
  assert f"{meta.num_steps:,} of {meta.num_steps:,} it., in progress" in shots.method_name(
      "protonet", cell)
  # A rerun computes nothing: it reads the cells (here, one edited to show it is read).
  path = tmp_path / "sweep" / "cells" / "ncm_5w1s.json"
  saved = json.loads(path.read_text())
  path.write_text(json.dumps(dict(saved, value=dict(saved["value"], accuracy=-1.0))))
  assert shots.run(config, str(tmp_path / "sweep"))["ncm_5w1s"]["accuracy"] == -1.0
  # A cell of another code version is refused in one line naming what differs.
  path.write_text(json.dumps(dict(saved, key=dict(saved["key"], code="0" * 16))))
  with pytest.raises(cache.StaleCacheError, match=r"ncm_5w1s.json was computed with other code"):
    shots.run(config, str(tmp_path / "sweep"))
  path.write_text(json.dumps(saved))
  assert os.path.exists(tmp_path / "sweep" / "pretrain_cosine" / "results.json")
  # A finished pre-training run as the network (init_from): the same network as the
  # sweep's own, so the same cells; a run on other images is refused, naming both shapes.
  config.init_from = str(tmp_path / "sweep" / "pretrain_linear")
  config.baselines, config.checkpoints = ("ncm", "linear_probe"), ()
  again = shots.run(config, str(tmp_path / "from_run"))
  for name in ("ncm_5w1s", "linear_probe_5w1s"):
    assert again[name]["accuracy"] == cells[name]["accuracy"], name
  assert not os.path.exists(tmp_path / "from_run" / "pretrain_linear")
  # LP-FT alone probes with the linear probe's picks all the same: it scores that cell
  # first, so its number is the full sweep's (the picks are not the defaults: a probe of
  # 0 steps would score otherwise).
  assert cells["linear_probe_5w1s"]["steps"] > 0
  config.baselines = ("lp_ft",)
  alone = shots.run(config, str(tmp_path / "lp_ft_alone"))
  assert alone["lp_ft_5w1s"]["accuracy"] == cells["lp_ft_5w1s"]["accuracy"]
  assert os.path.exists(tmp_path / "lp_ft_alone" / "cells" / "linear_probe_5w1s.json")
  digits = finetune_configs.get_config("quick_source")
  digits.objective = "rotation"
  trainer.train_and_evaluate(digits, str(tmp_path / "digits"))
  config.init_from = str(tmp_path / "digits")
  with pytest.raises(ConfigError, match=r"images of shape \[8, 8, 1\], the tasks' are "
                     r"\[28, 28, 1\]"):
    shots.run(config, str(tmp_path / "from_digits"))
