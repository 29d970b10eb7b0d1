"""Multi-host for real: two processes on localhost, joined by `jax.distributed` (gloo
collectives on CPU), with 2 virtual CPU devices each, run the launchers' commands in one
shared workdir; killed after a checkpoint and rerun, they reach the single-process
run's numbers, and only process 0 writes the run's files.
"""
import os
import signal
import socket
import time

import numpy as np
import pytest

from tests import reference
from tests.test_faults import (COMMANDS, checkpoint_steps, metric_lines, results, start,
                               tail, uninterrupted)

TIMEOUT = 600


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_pair(args, workdir, tmp_path, attempt: int, kill_after_checkpoint: bool = False):
  """Starts processes 0 and 1 of `args`; waits for both, or SIGKILLs both once a
  checkpoint exists. A process that dies leaves its peer waiting in a collective (for
  minutes, until the coordination service gives up), so a failure kills the other."""
  port = free_port()
  procs, logs = [], []
  for i in range(2):
    logs.append(str(tmp_path / f"process{i}.log"))
    # Per-process compilation caches, fresh: the first attempt compiles, the rerun reuses.
    procs.append(start(args, workdir, logs[i], str(tmp_path / f"xla_cache{i}"),
                       extra=(f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                              f"--process_id={i}"),
                       XLA_FLAGS="--xla_force_host_platform_device_count=2",
                       JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo"))
  deadline = time.time() + TIMEOUT
  try:
    while any(p.poll() is None for p in procs):
      failed = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
      assert not failed, f"attempt {attempt}: process {failed[0]} failed:\n" + tail(
          logs[failed[0]])
      assert time.time() < deadline, "timed out:\n" + tail(logs[0]) + tail(logs[1])
      if kill_after_checkpoint and checkpoint_steps(workdir):
        break
      time.sleep(0.01)
  finally:
    for p in procs:
      if p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait()
  if not kill_after_checkpoint:
    assert [p.returncode for p in procs] == [0, 0], tail(logs[0]) + tail(logs[1])
  return logs


@pytest.mark.parametrize("name", ["meta", "finetune"])
def test_two_processes_give_the_single_process_results(tmp_path, tmp_path_factory, worker_id,
                                                       name):
  straight, _, _ = uninterrupted(tmp_path_factory, worker_id, name)
  args, final, _ = COMMANDS[name]
  workdir = tmp_path / "run"
  run_pair(args, workdir, tmp_path, 1, kill_after_checkpoint=True)
  first = checkpoint_steps(workdir)
  assert first and final not in first and not (workdir / "results.json").exists(), first
  logs = run_pair(args, workdir, tmp_path, 2)
  log1 = tail(logs[1], 100000)
  assert "Process 1 of 2; 2 local of 4 devices." in log1, log1[-3000:]
  assert "Resumed from" in log1 and "Resumed from" in tail(logs[0], 100000)

  # The single-process numbers: the batch's (or meta-batch's) sum is split over 4 devices
  # and all-reduced, which changes only its order, i.e. float32 rounding; F32_RTOL (1e-4
  # of the scale, tests/reference.py) is ~800 float32 epsilons, while a process computing
  # other tasks or batches than the single-process run would be off by far more.
  from jaxtl import checkpoint  # pylint: disable=import-outside-toplevel
  error = reference.relative_error(checkpoint.load_variables(str(workdir)),
                                   checkpoint.load_variables(str(straight)))
  assert error <= reference.F32_RTOL, f"variables differ by {error:.1e} of their scale"
  got, expected = results(workdir), results(straight)
  for key, value in expected.items():
    if key.startswith("test_") and key.endswith(("mse", "loss")):
      np.testing.assert_allclose(got[key], value, rtol=reference.F32_RTOL, err_msg=key)
    elif key.endswith("accuracy"):  # rounding may flip a near-tied prediction, no more
      assert abs(got[key] - value) <= 1.01 / got["num_" + key.split("_")[0]], (key, got, value)
  if name == "meta":
    np.testing.assert_allclose(list(got["test_mse_by_steps"].values()),
                               list(expected["test_mse_by_steps"].values()),
                               rtol=reference.F32_RTOL)

  # Only process 0 wrote: one line per logged step, one TensorBoard file per attempt,
  # no progress lines from process 1, and the time segments of two attempts.
  assert [l["step"] for l in metric_lines(workdir)] == [l["step"] for l in
                                                        metric_lines(straight)]
  assert len(os.listdir(workdir / "tb")) == 2, os.listdir(workdir / "tb")
  assert "steps/s" in tail(logs[0], 100000) and "steps/s" not in log1
  segments = got["train_segments"]
  assert [(s["from"], s["to"]) for s in segments] == [(0, first[-1]), (first[-1], final)]
  assert sorted(os.listdir(workdir)) == sorted(os.listdir(straight))  # no stray .tmp files
