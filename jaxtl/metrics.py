"""Metric logging: plain text (stdout + metrics.jsonl), TensorBoard events, progress lines."""
import json
import os
import time
from typing import Mapping

from absl import logging


class MetricLogger:
  """Writes scalars to `workdir/metrics.jsonl` and TensorBoard event files in `workdir/tb`."""

  def __init__(self, workdir: str, total_steps: int, first_step: int = 0):
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tb"))
    except ImportError:  # TensorBoard files are optional; the jsonl file is not.
      self._tb = None
    self._total, self._t0, self._step0 = total_steps, time.perf_counter(), first_step

  def write(self, step: int, scalars: Mapping[str, float], progress: bool = True):
    scalars = {k: float(v) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(k, v, step)
      self._tb.flush()
    if progress:
      elapsed = time.perf_counter() - self._t0
      rate = (step - self._step0) / elapsed if elapsed > 0 and step > self._step0 else 0.0
      eta = (self._total - step) / rate if rate else float("nan")
      text = " ".join(f"{k}={v:.4g}" for k, v in scalars.items())
      logging.info("step %d/%d %s | %.1f steps/s | ETA %.0fs", step, self._total, text, rate, eta)

  def close(self):
    self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


RESULT_KINDS = ("meta", "finetune", "compare", "surgical", "lecture")


def write_results(workdir: str, config, metrics: Mapping, kind: str, name: str = "results",
                  **extra) -> str:
  """Writes `workdir/{name}.json` = {"kind": ..., "config": ..., "metrics": ..., **extra}
  atomically; `kind` (one of RESULT_KINDS) tells `jaxtl.report` how to show it."""
  if kind not in RESULT_KINDS:
    raise ValueError(f"Unknown result kind {kind!r}; valid: {RESULT_KINDS}.")
  path = os.path.join(workdir, f"{name}.json")
  cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump({"kind": kind, "config": cfg, "metrics": dict(metrics), **extra}, f, indent=2,
              default=str)
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
