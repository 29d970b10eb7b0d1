"""End-to-end: every experiment script runs from the command line on its quick variant."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, require_shared_data


def _run(module, *args, cwd=None):
  """`python -m module args` from `cwd` (default: the checkout). pip installs the library
  only, so from another folder the launchers need the checkout on PYTHONPATH, as a user's
  would."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAXTL_COMPILATION_CACHE="")  # hermetic
  if cwd is not None:
    env["PYTHONPATH"] = str(REPO)
  proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _metrics(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)["metrics"]


def test_pretrain_then_finetune_surgical(tmp_path):
  src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
  _run("experiments.pretrain", "--config=experiments/configs/finetune.py:quick_source",
       f"--workdir={src}")
  proc = _run("experiments.finetune", "--config=experiments/configs/finetune.py:quick",
              f"--workdir={dst}", f"--config.init_from={src}", "--config.strategy=surgical",
              "--config.blocks=block1,head")
  assert "steps/s" in proc.stderr and "ETA" in proc.stderr  # progress lines
  metrics = _metrics(dst)
  # The summary on stdout: the headline metric and the files written.
  assert f"test_accuracy: {metrics['test_accuracy']:.4f}" in proc.stdout
  assert proc.stdout.strip().splitlines()[-1] == f"wrote {dst}/results.json"
  assert 0 <= metrics["test_accuracy"] <= 1 and metrics["frozen_params"] > 0
  assert metrics["data"]["train"]["source"] == "embedded:digits"
  # The same pre-trained run fine-tuned on the user's own images: PNG class folders.
  folder = _digits_as_png_folders(tmp_path / "my_digits")
  _run("experiments.finetune", "--config=experiments/configs/finetune.py:quick",
       f"--workdir={tmp_path / 'mine'}", f"--config.init_from={src}",
       "--config.strategy=linear_probe", f"--config.dataset={folder}", "--config.num_val=25")
  mine = _metrics(str(tmp_path / "mine"))
  assert mine["data"]["train"]["source"] == f"folder:{folder}/train"
  assert mine["data"]["test"]["examples"] == 5 * 5 and 0 <= mine["test_accuracy"] <= 1
  # The `folder` variant uses every image unless limited, and says what it uses.
  proc = _run("experiments.finetune", "--config=experiments/configs/finetune.py:folder",
              f"--workdir={tmp_path / 'whole'}", f"--config.dataset={folder}",
              "--config.num_steps=2", "--config.log_every=2", "--config.checkpoint_every=2")
  assert _metrics(str(tmp_path / "whole"))["num_train"] == 10 * 15
  assert "data: 150 training, 0 validation and 50 test examples" in proc.stderr
  # meta_eval pointed at this folder says what it holds.
  last = _fails_in_one_line("experiments.meta_eval", "--config=experiments/configs/meta.py:quick",
                            f"--workdir={dst}")
  assert "holds a fine-tuning run (strategy='surgical')" in last, last


def _digits_as_png_folders(root):
  """The embedded digits as root/{train,test}/<digit>/<index>.png (15 and 5 per class)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from jaxtl.data import load_dataset  # pylint: disable=import-outside-toplevel
  digits = load_dataset("digits", "all")
  for split, part in (("train", slice(0, 15)), ("test", slice(15, 20))):
    for c in range(10):
      (root / split / str(c)).mkdir(parents=True)
      for i in np.flatnonzero(digits.labels == c)[part]:
        pixels = np.round(digits.images[i, ..., 0] * 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / split / str(c) / f"{i}.png")
  return str(root)


def _fails_in_one_line(module, *args):
  """Runs a command that must fail on the user's input: exit code 1, the last line of
  stderr is "error: ..." and there is no traceback."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAXTL_COMPILATION_CACHE="")
  proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  last = proc.stderr.strip().splitlines()[-1]
  assert proc.returncode == 1 and last.startswith("error: "), proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  return last


BAD_COMMANDS = [  # (config and flags, what the one line must say)
    ("finetune.py:quick --config.strategy=sugical", "Unknown strategy 'sugical'; valid strategies"),
    ("finetune.py:quick --config.strategy=surgical --config.blocks=blok9",
     "Unknown block 'blok9'; valid blocks"),
    ("finetune.py:quick --config.init_from=runs/nowhere", "No saved variables"),
    ("finetune.py:quick --config.batch_size=0", "batch_size=0 must be positive"),
    ("meta.py:quick --config.algorithm=mamll", "Unknown algorithm 'mamll'; valid"),
    ("meta.py:quick --cpu_devices=-1", "cpu_devices=-1; valid: 0 (JAX's default) or more"),
    ("meta.py:sinusoid --config.num_steps=-5", "num_steps=-5 must be positive"),
    ("meta.py:sinusoid --config.checkpoint_every=700", "checkpoint_every=700 must be a multiple"),
    ("meta.py:quick --config.way=2000 --config.data_dir=DATA", "2000-way tasks need 2000 classes"),
    # Mistakes caught while the flags are parsed (issue 29): one line too.
    ("finetune.py:digitz", "Unknown variant 'digitz'; valid: digits_source"),
    ("finetune.py:quick --config.foo=1", "unknown config field 'foo'"),
    ("finetune.py:quick --config.learnin_rate=1",
     'Did you mean "learning_rate" instead of "learnin_rate"?'),
    ("finetune.py:quick --config.learning_rate=abc", "--config.learning_rate=abc"),
]


@pytest.mark.parametrize("flags,expected", BAD_COMMANDS, ids=[f for f, _ in BAD_COMMANDS])
def test_bad_config_is_one_line_and_writes_nothing(flags, expected, tmp_path):
  if "DATA" in flags:
    flags = flags.replace("DATA", require_shared_data())
  config, *overrides = flags.split()
  module = "experiments.meta_train" if config.startswith("meta") else "experiments.finetune"
  workdir = tmp_path / "run"
  last = _fails_in_one_line(module, f"--config=experiments/configs/{config}",
                            f"--workdir={workdir}", *overrides)
  assert expected in last, last
  # Nothing was written, so the corrected command cannot be refused as "another config".
  assert not workdir.exists()


def test_meta_eval_of_an_empty_folder_is_one_line_not_a_traceback(tmp_path):
  last = _fails_in_one_line("experiments.meta_eval", "--config=experiments/configs/meta.py:quick",
                            f"--workdir={tmp_path / 'typo'}")
  assert "neither final variables" in last and not (tmp_path / "typo").exists()


def test_compare_quick(tmp_path):
  _run("experiments.compare_finetune", "--config=experiments/configs/compare.py:quick",
       f"--workdir={tmp_path}")
  assert set(_metrics(tmp_path)) == {"full", "lp_ft"}
  assert (tmp_path / "results.md").read_text().startswith("| strategy")


def test_lecture_quick_runs_from_another_directory(tmp_path):
  _run("experiments.lecture", f"--config={REPO}/experiments/configs/lecture.py:quick",
       f"--workdir={tmp_path}", cwd=tmp_path)
  assert set(_metrics(tmp_path)) == {"maml", "pretrain", "multitask"}


def test_meta_train_quick_protonet_cli_on_the_cores_as_devices(tmp_path, data_dir):
  """`--cpu_devices=2`: the CPU is two JAX devices and the meta-batch is split over both."""
  proc = _run("experiments.meta_train", "--config=experiments/configs/meta.py:quick",
              f"--workdir={tmp_path}", f"--config.data_dir={data_dir}",
              "--config.algorithm=protonet", "--cpu_devices=2")
  assert 0 <= _metrics(tmp_path)["test_accuracy"] <= 1
  assert "devices [CpuDevice(id=0), CpuDevice(id=1)]" in proc.stderr, proc.stderr[-3000:]


def test_surgical_study_quick_with_a_users_corruption(tmp_path):
  _run("experiments.surgical", "--config=experiments/configs/surgical.py:quick",
       f"--workdir={tmp_path}", "--config.imports=tests.user_corruption",
       "--config.shifts=input:digits:checkerboard")
  with open(tmp_path / "results.json") as f:
    results = json.load(f)
  assert results["kind"] == "surgical_study"
  rows = results["metrics"]["input:digits:checkerboard"]["strategies"]
  assert set(rows) == {"block1", "all", "lp", "lp_ft", "auto_rgn"}  # lp: LP-FT's probe
  assert all(len(r["per_seed"]) == 2 and 0 <= r["test_accuracy"] <= 1 for r in rows.values())
  # Batch norm frozen (the paper's default): no running statistic changes, and surgical
  # fine-tuning of block1 changes block1 only.
  assert all(r["changed_stats"] == 0 for r in rows.values())
  assert rows["block1"]["changed_blocks"] == ["block1"]
  assert (tmp_path / "results.png").exists() and (tmp_path / "results.md").exists()
  # The settings tried are scored on validation only; each pick is trained again, scored
  # everywhere, with the tuned cell's validation accuracy (the same weights), and is what
  # the row reports.
  cells = {p.relative_to(tmp_path / "cells"): json.loads(p.read_text())["value"]
           for p in (tmp_path / "cells").rglob("*.json")}
  tuned = {p: c for p, c in cells.items() if "_lr" in p.name and "_scored" not in p.name}
  scored = {p: c for p, c in cells.items() if p.name.endswith("_scored.json")}
  assert tuned and all(set(r) >= {"val_accuracy"} and "test_accuracy" not in r
                       for c in tuned.values() for r in c["per_seed"])
  assert len(scored) == 2 * 4  # 2 pre-trainings x the 4 rows tuned by learning rate
  for path, cell in scored.items():
    own = cells[path.with_name(path.name.replace("_scored", ""))]
    assert [r["val_accuracy"] for r in cell["per_seed"]] == \
        [r["val_accuracy"] for r in own["per_seed"]]
  reported = sorted(r["test_accuracy"] for label in ("block1", "all", "lp_ft", "auto_rgn")
                    for r in rows[label]["per_seed"])
  assert reported == sorted(r["test_accuracy"] for c in scored.values() for r in c["per_seed"])
  # An unknown corruption is named with the valid ones, in one line, before any run.
  last = _fails_in_one_line("experiments.surgical", "--config=experiments/configs/surgical.py:quick",
                            f"--workdir={tmp_path / 'bad'}", "--config.shifts=input:digits:snow")
  assert "snow" in last and "shot_noise" in last, last
  assert not (tmp_path / "bad").exists()


def test_a_workdir_that_is_a_file_is_one_line_and_left_alone(tmp_path):
  path = tmp_path / "notes.txt"
  path.write_text("mine")
  last = _fails_in_one_line("experiments.finetune", "--config=experiments/configs/finetune.py:quick",
                            f"--workdir={path}")
  assert "is a file" in last and path.read_text() == "mine"


def test_multitask_quick(tmp_path):
  _run("experiments.multitask", "--config=experiments/configs/multitask.py:quick",
       f"--workdir={tmp_path}", "--config.shifts=output")
  with open(tmp_path / "multitask.json") as f:
    rows = json.load(f)["metrics"]["output"]["strategies"]
  assert {"target_only", "multitask", "block1"} <= set(rows)


def test_a_diverging_run_stops_in_one_line_and_resumes_from_a_good_checkpoint(tmp_path):
  workdir = tmp_path / "run"
  last = _fails_in_one_line("experiments.finetune", "--config=experiments/configs/finetune.py:quick",
                            f"--workdir={workdir}", "--config.learning_rate=1e30")
  assert "Loss is not finite at step" in last and "Lower the learning rate" in last, last


def test_ctrl_c_is_one_line_and_the_same_command_resumes(tmp_path):
  import signal  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "run"
  args = [sys.executable, "-m", "experiments.finetune",
          "--config=experiments/configs/finetune.py:quick", f"--workdir={workdir}",
          "--config.num_steps=100000", "--config.checkpoint_every=3"]
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAXTL_COMPILATION_CACHE="")
  # stderr goes to a file: a pipe nobody reads while the run logs fills up and blocks it.
  # Any checkpoint will do: with max_to_keep=2 the one of step 3 is gone 6 steps later.
  with open(tmp_path / "stderr", "w+") as log:
    proc = subprocess.Popen(args, cwd=REPO, env=env, stderr=log, text=True)
    deadline = time.time() + 240
    saved = lambda: any(p.name.isdigit() for p in (workdir / "checkpoints").glob("*"))
    while not saved() and time.time() < deadline:
      time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:
      proc.wait(timeout=120)
    finally:
      if proc.poll() is None:  # a failed test leaves no run behind
        proc.kill()
    log.seek(0)
    err = log.read()
  last = err.strip().splitlines()[-1]
  assert last.startswith("interrupted (the last checkpoint is step ") and \
      last.endswith("the same command resumes."), err[-3000:]
  assert "Traceback" not in err, err[-3000:]


def test_config_help_lists_every_field_with_its_description():
  proc = _run("experiments.surgical", "--config=experiments/configs/surgical.py:natural",
              "--config_help")
  lines = proc.stdout.splitlines()
  assert lines[0].startswith("--config fields of experiments/configs/surgical.py:natural")
  assert "  lr_grid = (1e-05, 0.0001, 0.001, 0.01, 0.1)" in lines
  assert any(l.startswith("  target_pool = 10000  # training images held out") for l in lines)
  assert any(l.startswith("  finetune.optimizer = 'adam'  # adam | adamw | sgd") for l in lines)


def test_a_meta_run_that_explodes_without_nan_stops_in_one_line(tmp_path):
  """inner_lr=1e6: the loss stays finite, far above chance level's, and the run stops."""
  last = _fails_in_one_line("experiments.meta_train", "--config=experiments/configs/meta.py:quick",
                            f"--config.data_dir={require_shared_data()}", "--config.inner_lr=1e6",
                            f"--workdir={tmp_path / 'run'}")
  assert "100x what guessing scores: the run diverged" in last and "inner_lr" in last, last
