"""Faults at random moments: a run SIGKILLed anywhere and rerun gives the uninterrupted
run's results; a damaged last checkpoint falls back to the one before; a resumed run's
metrics.jsonl has no repeated steps.

The commands are the launchers' (`python -m experiments...`), as a user runs them.
Meta-learning uses the sinusoid variant shortened (20 iterations, a checkpoint every 5)
rather than `meta.py:quick` on Omniglot, whose conv net takes 3x longer to compile: ten
kills and reruns must fit the CI budget. Fine-tuning uses `finetune.py:quick_source`.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import filelock
import numpy as np
import pytest

from tests import reference
from tests.conftest import REPO

META_ARGS = ("experiments.meta_train", "--config=experiments/configs/meta.py:sinusoid",
             "--config.num_steps=20", "--config.steps_per_call=5", "--config.log_every=5",
             "--config.checkpoint_every=5", "--config.eval_tasks=20", "--config.eval_batch=20",
             "--config.meta_batch=8")  # a multiple of 4: tests/test_multihost.py's devices
FT_ARGS = ("experiments.pretrain", "--config=experiments/configs/finetune.py:quick_source",
           "--config.checkpoint_every=2", "--config.log_every=2")
# (command, final step, a line logged just before the first call, which compiles)
COMMANDS = {"meta": (META_ARGS, 20, "inner loop adapts"),
            "finetune": (FT_ARGS, 6, "parameter partition")}

# A resumed run replays the uninterrupted one: the same XLA executables on the same
# machine, from checkpoints that store float32 exactly. 1e-6 (about 8 float32 ulps)
# leaves room only for a reduction reordered by another thread split; a step skipped or
# repeated moves the results by 1e-3 or more.
RESUME_RTOL = 1e-6


def env(cache: str = "", **extra) -> dict:
  """Subprocess environment; `cache`: the XLA compilation cache folder ("" = off)."""
  return dict(os.environ, JAX_PLATFORMS="cpu", JAXTL_COMPILATION_CACHE=cache, **extra)


def start(args, workdir, log_path, cache="", extra=(), **env_extra) -> subprocess.Popen:
  log = open(log_path, "a")  # pylint: disable=consider-using-with
  log.write(f"\n=== {time.strftime('%X')} {' '.join(args[:2])}\n")
  log.flush()
  proc = subprocess.Popen([sys.executable, "-m", *args, f"--workdir={workdir}", *extra],
                          cwd=REPO, env=env(cache, **env_extra), stdout=log,
                          stderr=subprocess.STDOUT)
  log.close()
  return proc


def checkpoint_steps(workdir) -> list:
  folder = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(folder):
    return []
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


def results(workdir) -> dict:
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)["metrics"]


def metric_lines(workdir) -> list:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def tail(path, n=3000, start=0) -> str:
  """The last `n` characters of the file at `path` from offset `start`."""
  with open(path) as f:
    f.seek(start)
    return f.read()[-n:]


def uninterrupted(tmp_path_factory, worker_id, name: str):
  """(workdir, timeline, cache) of the uninterrupted single-process run of
  COMMANDS[name], run once per session: with pytest -n the first worker to ask runs it
  and the others wait on a file lock. timeline: seconds from the start to the first and
  the final checkpoint, results.json, and the exit. It compiles from scratch and fills
  the compilation cache `cache`, which reruns of the same command may use."""
  root = tmp_path_factory.getbasetemp()
  root = root if worker_id == "master" else root.parent  # shared by the workers
  workdir, stamps = root / f"uninterrupted_{name}", root / f"uninterrupted_{name}.json"
  cache = str(root / f"xla_cache_{name}")
  with filelock.FileLock(str(root / f"uninterrupted_{name}.lock")):
    if not stamps.exists():
      shutil.rmtree(workdir, ignore_errors=True)
      shutil.rmtree(cache, ignore_errors=True)
      args, final, marker = COMMANDS[name]
      t0 = time.perf_counter()
      proc = start(args, workdir, str(workdir) + ".log", cache)
      timeline = {}
      while proc.poll() is None:
        steps, now = checkpoint_steps(workdir), time.perf_counter() - t0
        if "compiling" not in timeline and marker in tail(str(workdir) + ".log", 10**6):
          timeline["compiling"] = now
        if steps:
          timeline.setdefault("first_checkpoint", now)
        if final in steps:
          timeline.setdefault("final_checkpoint", now)
        if (workdir / "results.json").exists():
          timeline.setdefault("results", now)
        time.sleep(0.01)
      timeline["exit"] = time.perf_counter() - t0
      assert proc.returncode == 0, tail(str(workdir) + ".log")
      stamps.write_text(json.dumps(timeline))
  return workdir, json.loads(stamps.read_text()), cache


def assert_same_run(got, expected, rtol, what):
  """The runs in workdirs `got` and `expected` have the same results and metric lines."""
  a, b = results(got), results(expected)
  for key, value in b.items():
    if isinstance(value, float) and "per_second" not in key and "seconds" not in key:
      np.testing.assert_allclose(a[key], value, rtol=rtol, err_msg=f"{what}: {key}")
    elif key.endswith("_by_steps"):
      np.testing.assert_allclose([a[key][s] for s in value], list(value.values()), rtol=rtol,
                                 err_msg=f"{what}: {key}")
  from jaxtl import checkpoint  # pylint: disable=import-outside-toplevel
  error = reference.relative_error(checkpoint.load_variables(str(got)),
                                   checkpoint.load_variables(str(expected)))
  assert error <= rtol, f"{what}: final variables differ by {error:.1e} of their scale"
  lines, expected_lines = metric_lines(got), metric_lines(expected)
  assert [l["step"] for l in lines] == [l["step"] for l in expected_lines], what
  for line, ref in zip(lines, expected_lines):
    for key in ref:
      if "per_second" not in key:
        np.testing.assert_allclose(line[key], ref[key], rtol=rtol, err_msg=f"{what}: {line}")
  segments = results(got)["train_segments"]
  assert segments[0]["from"] == 0 and segments[-1]["to"] == results(got).get(
      "meta_iterations", results(got).get("steps"))
  assert all(s["to"] == t["from"] for s, t in zip(segments, segments[1:])), segments


@pytest.mark.parametrize("name", ["meta", "finetune"])
def test_sigkill_at_random_moments_then_the_same_command_gives_the_uninterrupted_results(
    tmp_path, tmp_path_factory, worker_id, name):
  """Five seeded random moments per command (ten in all): the first while the first
  call compiles (no compilation cache yet), then during training calls and checkpoint
  writes, during evaluation and the writing of variables and results, or during a warm
  restart. After each kill the same command reruns in the same workdir."""
  straight, timeline, warm_cache = uninterrupted(tmp_path_factory, worker_id, name)
  args, final, marker = COMMANDS[name]
  # The first run compiles from scratch (an empty compilation cache) and is killed
  # while starting or compiling; the reruns use the cache that the uninterrupted run
  # filled: users run with the cache on by default, and it makes a rerun cost its
  # training rather than a recompilation, which keeps ten kills within the CI budget.
  # jax writes cache entries non-atomically; a torn entry fails to load, and jax then
  # warns and recompiles, so a kill there cannot change the numbers.
  cache = str(tmp_path / "xla_cache")
  rng = random.Random(f"faults-{name}")
  warm = 0.35  # a warm start takes about a third of a cold one (measured: 0.29 to 0.43)
  train_window = max(timeline["final_checkpoint"] - timeline["first_checkpoint"], 0.05)
  end_window = timeline["results"] - timeline["final_checkpoint"]
  log, chain = str(tmp_path / "runs.log"), 0
  workdir = tmp_path / f"run{chain}"
  kills, missed = [], []
  while len(kills) < 5 and len(kills) + len(missed) < 8:  # a run may finish before
    phase = (["compiling", "training", "finishing"] + [None] * 5)[len(kills) + len(missed)]
    phase = phase or rng.choice(["warm start", "training", "finishing"])
    before = checkpoint_steps(workdir)
    if phase == "compiling":
      window = timeline["first_checkpoint"] - timeline["compiling"]
      anchor, delay = "log line", rng.uniform(0.0, 0.7) * window
    elif phase == "warm start":
      anchor, delay = None, rng.uniform(0.0, 0.9) * warm * timeline["first_checkpoint"]
    elif phase == "training" and (not before or before[-1] < final - 1):
      anchor, delay = "new checkpoint", rng.uniform(0.0, train_window)
    else:
      anchor, delay = "final checkpoint", rng.uniform(0.0, 0.9) * warm * end_window
    offset = os.path.getsize(log) if os.path.exists(log) else 0  # this run's lines follow
    proc = start(args, workdir, log, cache if phase == "compiling" else warm_cache)
    t0 = time.perf_counter()
    anchored = t0 if anchor is None else None
    while proc.poll() is None:
      steps = checkpoint_steps(workdir)
      if anchored is None and (
          (anchor == "log line" and marker in tail(log, 10**6, offset)) or
          (anchor == "new checkpoint" and steps and steps[-1] > (before or [0])[-1]) or
          (anchor == "final checkpoint" and final in steps)):
        anchored = time.perf_counter()
      if anchored is not None and time.perf_counter() >= anchored + delay:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append((phase, round(time.perf_counter() - t0, 2), steps,
                      (workdir / "results.json").exists()))
        break
      time.sleep(0.005)
    else:  # finished before the moment: a complete run, checked below like the last one
      assert proc.returncode == 0, tail(log)
      missed.append(phase)
    if (workdir / "results.json").exists():  # done (or killed after writing its results)
      assert_same_run(workdir, straight, RESUME_RTOL, f"{name} run{chain} {kills}")
      chain += 1
      workdir = tmp_path / f"run{chain}"
  if not (workdir / "results.json").exists() and workdir.exists():
    proc = start(args, workdir, log, warm_cache)
    assert proc.wait(timeout=600) == 0, tail(log)
    assert_same_run(workdir, straight, RESUME_RTOL, f"{name} final run {kills}")
  # The moments really fell where they were meant to: the first before any checkpoint
  # existed, some while a resumable checkpoint but no results existed.
  assert len(kills) == 5, f"only {len(kills)} kills landed: {kills}, missed {missed}"
  assert not kills[0][2], kills
  assert any(steps and not done for _, _, steps, done in kills), kills
  with open(tmp_path / "kills.json", "w") as f:  # (phase, seconds, checkpoints, results?)
    json.dump({"kills": kills, "finished_before_the_moment": missed}, f)


def test_damaged_last_checkpoint_falls_back_to_the_previous_one(tmp_path, tmp_path_factory,
                                                               worker_id):
  """A run whose final checkpoint was truncated after it was written (here: the
  uninterrupted run with its results removed) resumes from the checkpoint before it,
  with a warning naming both steps, and reaches the same results."""
  straight, _, cache = uninterrupted(tmp_path_factory, worker_id, "meta")
  workdir = tmp_path / "damaged"
  shutil.copytree(straight, workdir)
  os.remove(workdir / "results.json")
  shutil.rmtree(workdir / "variables")
  assert checkpoint_steps(workdir) == [15, 20]
  files = [os.path.join(d, f) for d, _, fs in os.walk(workdir / "checkpoints" / "20")
           for f in fs]
  largest = max(files, key=os.path.getsize)  # the arrays' data
  os.truncate(largest, os.path.getsize(largest) // 2)
  log = str(tmp_path / "run.log")
  proc = start(META_ARGS, workdir, log, cache)  # compiled by the uninterrupted run
  assert proc.wait(timeout=600) == 0, tail(log)
  text = tail(log, 100000)
  assert "Checkpoint step 20" in text and "cannot be restored" in text, text[-3000:]
  assert "previous checkpoint, step 15" in text, text[-3000:]
  assert "Resumed from" in text and "at step 15" in text
  assert_same_run(workdir, straight, RESUME_RTOL, "resumed from step 15")


def test_resumed_logger_drops_the_killed_runs_later_lines(tmp_path):
  """metrics.jsonl of a run killed after step 30 and resumed from the checkpoint of
  step 20 (plus a torn last line): lines after 20 go, and the resumed run's lines
  follow without repeats; the final line of a run resumed from its last checkpoint is
  not written twice."""
  from jaxtl.metrics import MetricLogger  # pylint: disable=import-outside-toplevel
  logger = MetricLogger(str(tmp_path), 40)
  for step in (10, 20, 30):
    logger.write(step, {"loss": step / 10}, progress=False)
  logger.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 40, "lo')  # killed mid-line
  logger = MetricLogger(str(tmp_path), 40, first_step=20)
  assert [l["step"] for l in metric_lines(tmp_path)] == [10, 20]
  for step in (30, 40):
    logger.write(step, {"loss": step / 10}, progress=False)
  logger.write(40, {"test_accuracy": 0.5}, progress=False)
  logger.close()
  assert [l["step"] for l in metric_lines(tmp_path)] == [10, 20, 30, 40, 40]
  # Killed after its final checkpoint and line: the rerun restores step 40 and writes
  # the final line once more, which the logger skips; other lines of step 40 are kept.
  logger = MetricLogger(str(tmp_path), 40, first_step=40)
  logger.write(40, {"test_accuracy": 0.5}, progress=False)
  logger.close()
  lines = metric_lines(tmp_path)
  assert [l["step"] for l in lines] == [10, 20, 30, 40, 40] and lines[-1]["test_accuracy"] == 0.5
