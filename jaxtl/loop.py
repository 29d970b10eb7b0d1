"""The loop around a jitted training step, written once for every trainer (meta-learning,
fine-tuning, multi-task): resume from the newest checkpoint that restores, step, check
that the losses are finite before each checkpoint (so the last one is always good), log,
checkpoint atomically, and clock the training time across restarts.

    trained = loop.run(workdir, state, step_fn, num_steps=..., log_every=...,
                       checkpoint_every=..., hint="Lower the learning rate.")

`step_fn(state, step) -> (state, losses, scalars)` advances `stride` steps from `step`;
`losses` (one per step) are checked, and the last value of each of `scalars` (arrays
kept on the device until a line is written) is logged.
"""
import time
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import numpy as np
from absl import logging

from jaxtl import checkpoint, workdir as run_dir
from jaxtl.metrics import MetricLogger


class Trained(NamedTuple):
  state: Any
  step: int
  segments: list  # run_dir.TrainClock's, for results.json
  steps_per_second: float  # since the end of the first (compiling) call; nan if none
  logger: MetricLogger  # still open, for the caller's final line: close it


def run(workdir: str, state, step_fn: Callable, *, num_steps: int, log_every: int,
        checkpoint_every: int, hint: str, stride: int = 1, template=None,
        log_extra: Optional[Callable[[Any, int], Mapping[str, float]]] = None,
        rate_name: Optional[str] = None,
        step_callback: Optional[Callable[[int], None]] = None,
        loss_bound: Optional[float] = None) -> Trained:
  """Runs `step_fn` from the newest checkpoint in `workdir` (else from `state`, step 0)
  up to `num_steps`.

  template: the checkpoint's state template if not `state`, or a function step ->
    template (fine-tuning phases have different states).
  log_extra(state, step): more scalars for a log line (e.g. a validation accuracy).
  rate_name: if set, each log line has the steps per second under this name.
  step_callback(step): called after each call of `step_fn` (tests kill runs with it).
  loss_bound: a loss above it stops the run as diverged (`run_dir.check_finite`).
  """
  ckpts = checkpoint.manager(workdir)
  step = 0
  latest, restored = checkpoint.restore_latest(ckpts, state if template is None else template)
  if latest is not None:
    state, step = restored, latest
    logging.info("Resumed from %s at step %d.", workdir, step)
  logger = MetricLogger(workdir, num_steps, first_step=step)
  clock = run_dir.TrainClock(workdir, step)
  pending, pending_from = [], step
  steady = None  # (time, step) after the first call, which includes compilation
  while step < num_steps:
    state, losses, scalars = step_fn(state, step)
    step += stride
    if steady is None:
      jax.block_until_ready(losses)
      steady = (time.perf_counter(), step)
      logger.progress(step, "(first call, compilation included)", force=True)
    pending.append(losses)
    if step_callback is not None:
      step_callback(step)
    log_now = step % log_every == 0 or step == num_steps
    save_now = step % checkpoint_every == 0 or step == num_steps
    if not (log_now or save_now):
      logger.progress(step)  # a line by time between the logged steps
      continue
    run_dir.check_finite(pending, pending_from + 1, ckpts.latest_step(), workdir, hint,
                         loss_bound)
    pending, pending_from = [], step
    if log_now:
      line = {k: float(np.asarray(v).reshape(-1)[-1]) for k, v in scalars.items()}
      if log_extra is not None:
        line.update(log_extra(state, step))
      if rate_name and step > steady[1]:
        line[rate_name] = _rate(steady, step)
      logger.write(step, line)
    if save_now:  # after the step's line: a run resumed here has it and drops later ones
      ckpts.save(step, args=checkpoint.ocp.args.StandardSave(state))
      clock.save(step)
  ckpts.wait_until_finished()
  return Trained(state, step, clock.segments(step), _rate(steady, step), logger)


def _rate(steady, step: int) -> float:
  if steady is None or step == steady[1]:
    return float("nan")
  return (step - steady[1]) / (time.perf_counter() - steady[0])
