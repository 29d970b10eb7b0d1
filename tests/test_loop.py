"""jaxtl.loop, the loop every trainer shares: its cadence, resumption and finite check on a
counter state (the trainers' own resume tests are in test_faults.py)."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from jaxtl import loop


def _counter_step(calls, stride=1, bad_step=None):
  def step_fn(state, step):
    calls.append(step)
    losses = jnp.arange(step + 1, step + stride + 1, dtype=jnp.float32)
    if bad_step is not None:
      losses = jnp.where(losses == bad_step, jnp.nan, losses)
    return {"count": state["count"] + stride}, losses, {"loss": losses}
  return step_fn


def _lines(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _run(workdir, step_fn, **kw):
  kw = {"num_steps": 12, "log_every": 4, "checkpoint_every": 6, "hint": "Lower it.", **kw}
  return loop.run(str(workdir), {"count": jnp.zeros((), jnp.int32)}, step_fn, **kw)


def test_cadence_stride_and_extra_scalars(tmp_path):
  calls = []
  trained = _run(tmp_path, _counter_step(calls, stride=2), stride=2,
                 log_extra=lambda state, step: {"count": float(state["count"])},
                 rate_name="steps_per_second")
  trained.logger.close()
  assert calls == [0, 2, 4, 6, 8, 10] and trained.step == 12
  assert int(trained.state["count"]) == 12
  lines = _lines(tmp_path)
  assert [line["step"] for line in lines] == [4, 8, 12]
  assert [line["loss"] for line in lines] == [4.0, 8.0, 12.0]  # the last of each call's
  assert [line["count"] for line in lines] == [4.0, 8.0, 12.0]
  assert all(line["steps_per_second"] > 0 for line in lines)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["12", "6"]
  assert [s["to"] for s in trained.segments] == [12]


def test_resumes_from_the_last_checkpoint(tmp_path):
  class Killed(Exception):
    pass

  def kill_at_8(step):
    if step == 8:
      raise Killed()
  with pytest.raises(Killed):
    _run(tmp_path, _counter_step([]), step_callback=kill_at_8)
  calls = []
  trained = _run(tmp_path, _counter_step(calls))
  trained.logger.close()
  assert calls == list(range(6, 12))  # from the checkpoint of step 6
  assert int(trained.state["count"]) == 12
  assert [line["step"] for line in _lines(tmp_path)] == [4, 8, 12]
  assert [s["to"] for s in trained.segments] == [6, 12]


def test_a_non_finite_loss_names_its_step_and_the_last_good_checkpoint(tmp_path):
  with pytest.raises(FloatingPointError, match=r"step 9; the last good checkpoint is step 6.*"
                     r"Lower it\."):
    _run(tmp_path, _counter_step([], bad_step=9))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["6"]
  assert np.isfinite([line["loss"] for line in _lines(tmp_path)]).all()
