"""Metric logging: plain text (stdout + metrics.jsonl), TensorBoard events, progress lines."""
import json
import os
import time
from typing import Mapping

from absl import logging

from jaxtl import cache, runtime


class MetricLogger:
  """Writes scalars to `workdir/metrics.jsonl` and TensorBoard event files in `workdir/tb`;
  in a multi-process run, process 0 alone (`runtime.is_writer`).

  A run resumed from the checkpoint of `first_step` repeats the steps after it, so the
  lines the killed run wrote after that step (and a torn last line) are dropped first:
  the file then reads as if the run had never stopped."""

  PROGRESS_SECONDS = 30.0  # at most this long without a line on the console

  def __init__(self, workdir: str, total_steps: int, first_step: int = 0):
    self._total, self._t0, self._step0 = total_steps, time.perf_counter(), first_step
    self._printed = self._t0
    self._jsonl = self._tb = None
    self._kept = set()  # the key sets of kept lines at `first_step`
    if not runtime.is_writer():
      return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "metrics.jsonl")
    self._kept = _drop_after(path, first_step)
    self._jsonl = open(path, "a")
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      # purge_step hides the killed run's events after the checkpoint from TensorBoard.
      self._tb = SummaryWriter(os.path.join(workdir, "tb"),
                               purge_step=first_step + 1 if first_step else None)
    except ImportError:  # TensorBoard files are optional; the jsonl file is not.
      self._tb = None

  def write(self, step: int, scalars: Mapping[str, float], progress: bool = True):
    if self._jsonl is None:  # not the writing process
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    if step == self._step0 and tuple(sorted(scalars)) in self._kept:
      return  # resumed from the last checkpoint: the killed run wrote this line already
    self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(k, v, step)
      self._tb.flush()
    if progress:
      self.progress(step, " ".join(f"{k}={v:.4g}" for k, v in scalars.items()), force=True)

  def progress(self, step: int, text: str = "", force: bool = False):
    """A console line with the rate and ETA (nothing in the files): when forced, or when
    `PROGRESS_SECONDS` have passed since the last one, so a long run is never silent."""
    now = time.perf_counter()
    if not runtime.is_writer() or not (force or now - self._printed >= self.PROGRESS_SECONDS):
      return
    self._printed = now
    elapsed = now - self._t0
    rate = (step - self._step0) / elapsed if elapsed > 0 and step > self._step0 else 0.0
    eta = (self._total - step) / rate if rate else float("nan")
    logging.info("step %d/%d %s| %.2g steps/s | ETA %s", step, self._total,
                 text + " " if text else "", rate, _duration(eta))

  def close(self):
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


def _duration(seconds: float) -> str:
  if seconds != seconds:  # nan: no rate yet
    return "?"
  return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _drop_after(path: str, step: int) -> set:
  """Rewrites the jsonl file at `path` (atomically) without its lines after `step` and
  unreadable ones (a kill can tear the last line); returns the key sets of the lines
  at `step`."""
  if not os.path.exists(path):
    return set()
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      record = json.loads(line) if line.endswith("\n") else None
    except json.JSONDecodeError:
      record = None
    if isinstance(record, dict) and record.get("step", 0) <= step:
      kept.append((line, record))
  if len(kept) < len(lines):
    logging.info("%s: resuming at step %d, dropped %d later or torn lines.", path, step,
                 len(lines) - len(kept))
    with open(path + ".tmp", "w") as f:
      f.writelines(line for line, _ in kept)
    os.replace(path + ".tmp", path)
  return {tuple(sorted(set(r) - {"step"})) for _, r in kept if r.get("step") == step}


RESULT_KINDS = ("meta", "finetune", "compare", "surgical", "surgical_study", "lecture",
                "shots", "pretraining")


def write_text(path: str, text: str):
  """Writes a run's text file (a results table) on process 0 only (`runtime.is_writer`)."""
  if runtime.is_writer():
    with open(path, "w") as f:
      f.write(text)


def write_results(workdir: str, config, metrics: Mapping, kind: str, name: str = "results",
                  **extra) -> str:
  """Writes `workdir/{name}.json` = {"kind": ..., "config": ..., "metrics": ..., "stamp":
  the code version and library versions (`jaxtl.cache.stamp`), **extra} atomically (process 0 only, `runtime.is_writer`); `kind` (one of RESULT_KINDS) tells
  `jaxtl.report` and `jaxtl.studies.documents` how to show it."""
  if kind not in RESULT_KINDS:
    raise ValueError(f"Unknown result kind {kind!r}; valid: {RESULT_KINDS}.")
  path = os.path.join(workdir, f"{name}.json")
  if not runtime.is_writer():  # process 0 writes the same numbers
    return path
  cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump({"kind": kind, "config": cfg, "metrics": dict(metrics),
               "stamp": cache.stamp(), **extra}, f, indent=2, default=str)
  os.replace(tmp, path)
  return path


def pyplot():
  """matplotlib.pyplot with the Agg backend, or None (with a warning) if not installed."""
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt
  except ImportError:
    logging.warning("matplotlib is not installed (pip install jaxtl[plots]); no plot written.")
    return None
