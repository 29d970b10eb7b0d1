"""Run folders: refuse finished runs, pin the config of an unfinished one, detect NaNs,
and sum a run's training time over the processes that ran it."""
import json
import os
import time

import jax
import numpy as np

from jaxtl import runtime
from jaxtl.errors import ConfigError


class FinishedRunError(ConfigError):
  """The workdir already holds a finished run."""


# How a run executes, not what it computes (each meta-iteration's tasks come from the
# iteration number): a run started on CPU may resume on a GPU with other values of these.
EXECUTION_FIELDS = ("data_dir", "log_every", "checkpoint_every", "steps_per_call",
                    "num_devices", "task_batching", "remat")


def saved_config(workdir: str):
  """The config a run in `workdir` was started with (config.json, else the config in
  results.json), as plain JSON; None if neither exists."""
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  return saved_results(workdir).get("config")


def saved_results(workdir: str) -> dict:
  """The finished run's results.json in `workdir`, or {}."""
  path = os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


# Fields that configs gained or lost, with the value that means the behaviour of a config
# without them: runs saved before the change still resume and count as the same config.
FIELD_DEFAULTS = {"first_order": False,     # removed: algorithm="fomaml" says it
                  "test_backtrack": False,  # added
                  "splits": ["all"],        # added with meta-learning on any dataset
                  "num_train_classes": 0,   # added with it
                  "batch_norm": "transductive",  # added to meta configs with jaxtl.adapt
                  "num_val_alphabets": 0,   # added with Lake's protocol (alphabet tasks)
                  "train_tasks": "random", "test_tasks": "random",  # added with it
                  "clean_batch_stats": 0,   # added with issue 30's objectives
                  "support_steps": 0, "support_lr": 1e-3,  # added with ProtoNets' fine-tuning
                  "test_affine": {"views": 1, "rotate_deg": 0.0, "scale": [1.0, 1.0],
                                  "translate": 0.0},  # added with test-time augmentation
                  # added to pre-training configs with self-supervised objectives, with
                  # the defaults of `jaxtl.objectives.OPTIONS` (a test keeps them equal):
                  "objective": "supervised",
                  "objective_kwargs": {"augment": False, "max_rotate_deg": 15.0,
                                       "scale": [0.9, 1.3], "max_translate": 0.1,
                                       "pixel_noise": 0.05, "temperature": 0.5,
                                       "projection_dim": 64, "projection_hidden": 256,
                                       "crop_scale": [0.2, 1.0], "jitter": 0.5,
                                       "mask_ratio": 0.75, "patch": 4, "decoder_width": 32,
                                       "noise_std": 0.0, "masked_only": True}}


def load_config(workdir: str):
  """The saved config of the run in `workdir` as a ConfigDict, with the FIELD_DEFAULTS of
  fields it predates and JSON lists as tuples (hashable module fields); None if none."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  saved = saved_config(workdir)
  if saved is None:
    return None
  tuples = lambda t: ({k: tuples(v) for k, v in t.items()} if isinstance(t, dict) else
                      tuple(tuples(v) for v in t) if isinstance(t, list) else t)
  return ml_collections.ConfigDict({**FIELD_DEFAULTS, **tuples(saved)})


def config_diff(saved: dict, config) -> list:
  """Names of the fields in which `config` differs from a `saved` config (JSON), how a
  run executes (EXECUTION_FIELDS) aside."""
  current = json.loads(config.to_json_best_effort())
  saved = dict(saved)
  for key, default in FIELD_DEFAULTS.items():
    saved.setdefault(key, default)
    current.setdefault(key, default)
  return sorted(k for k in set(saved) | set(current)
                if saved.get(k) != current.get(k) and k not in EXECUTION_FIELDS)


def has_checkpoint(workdir: str) -> bool:
  """Whether `workdir` holds a training checkpoint, i.e. a run that has made progress."""
  folder = os.path.join(workdir, "checkpoints")
  return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def prepare(config, workdir: str):
  """Creates `workdir`; refuses one holding a finished run or an unfinished run of another
  config, EXECUTION_FIELDS aside (so that a resumed run is the run that was started).
  Call it after the config has been validated: it is a run's first write. A folder
  without a checkpoint holds no run yet, so its config.json is replaced."""
  os.makedirs(workdir, exist_ok=True)
  if os.path.exists(os.path.join(workdir, "results.json")):
    raise FinishedRunError(f"{workdir} already holds a finished run (results.json). Use "
                           f"another --workdir, or delete that folder to run again.")
  saved = saved_config(workdir)  # config.json: results.json was ruled out above
  if saved is not None and has_checkpoint(workdir):
    diff = config_diff(saved, config)
    if diff:
      raise ConfigError(f"{workdir} holds an unfinished run with another config (fields "
                        f"{diff} differ); resume with the same config or use another workdir.")
  elif runtime.is_writer():  # process 0 writes the run's files
    path = os.path.join(workdir, "config.json")
    with open(path + ".tmp", "w") as f:
      json.dump(json.loads(config.to_json_best_effort()), f, indent=2)
    os.replace(path + ".tmp", path)


def finished_results(config, workdir: str):
  """The metrics of the finished run in `workdir` if it was run with `config` (how it
  executed aside), None if there is none; a finished run of another config is an error,
  so that sweeps and tables never mix configs."""
  saved = saved_results(workdir)
  if not saved:
    return None
  diff = config_diff(saved.get("config") or {}, config)
  if diff:
    raise ConfigError(f"{workdir} holds a finished run of another config (fields {diff} "
                      f"differ); use another --workdir, or delete that folder to rerun it.")
  return saved["metrics"]


def check_at_least(config, minimum: int, names):
  """Raises ConfigError naming the first field of `names` below `minimum`."""
  for name in names:
    if config[name] < minimum:
      what = "positive" if minimum == 1 else f">= {minimum}"
      raise ConfigError(f"{name}={config[name]} must be {what}.")


def check_finite(losses, first_step: int, last_checkpoint, workdir: str, hint: str,
                 bound: float | None = None):
  """Raises FloatingPointError naming the first step whose loss in `losses` (the losses of
  steps `first_step`, `first_step + 1`, ...) is not finite, or above `bound` (a loss no
  working run reaches, e.g. 100 x chance level's cross-entropy); called before each
  checkpoint, so the last checkpoint is still good."""
  values = np.asarray(jax.device_get(losses)).reshape(-1)
  bad = np.flatnonzero(~np.isfinite(values))
  where = (f"the last good checkpoint is step {last_checkpoint} in {workdir}/checkpoints"
           if last_checkpoint is not None else f"no checkpoint was written in {workdir}")
  if bad.size:
    raise FloatingPointError(
        f"Loss is not finite at step {first_step + int(bad[0])}; {where}. {hint}")
  high = np.flatnonzero(values > bound) if bound else []
  if len(high):
    raise FloatingPointError(
        f"Loss {values[high[0]]:.3g} at step {first_step + int(high[0])} is over {bound:.3g}, "
        f"100x what guessing scores: the run diverged; {where}. {hint}")


def machine() -> str:
  """What this process trains on, e.g. "1 x NVIDIA H100 80GB HBM3" or "CPU, 2 cores"."""
  devices = jax.devices()
  if devices[0].platform == "cpu":
    cores = len(os.sched_getaffinity(0))
    return f"CPU, {cores} core{'s' if cores > 1 else ''}"
  return f"{len(devices)} x {devices[0].device_kind}"


class TrainClock:
  """Wall time of a run that may be killed and resumed, on this machine or another.

  `save(step)`, called with each checkpoint, writes `workdir/train_time.json`: one segment
  per process, {"from": step, "to": step, "seconds": s, "machine": ...}. A resumed process
  keeps the segments that end at or before its checkpoint (later progress died with the
  process that made it). A run resumed from a checkpoint older than this file has a first
  segment with "seconds": null, and `total_seconds` is then None: unknown, not zero."""

  FILE = "train_time.json"

  def __init__(self, workdir: str, step: int):
    self.path = os.path.join(workdir, self.FILE)
    self.before = segments_up_to(workdir, step) or []
    known_to = self.before[-1]["to"] if self.before else 0
    if known_to < step:
      self.before.append({"from": known_to, "to": step, "seconds": None, "machine": None})
    self.first_step, self.t0, self.machine = step, time.perf_counter(), machine()

  def segments(self, step: int) -> list:
    now = {"from": self.first_step, "to": step,
           "seconds": round(time.perf_counter() - self.t0, 1), "machine": self.machine}
    return self.before + [now]

  def save(self, step: int):
    if not runtime.is_writer():  # process 0 writes the run's file
      return
    with open(self.path + ".tmp", "w") as f:
      json.dump({"segments": self.segments(step)}, f, indent=1)
    os.replace(self.path + ".tmp", self.path)


def segments_up_to(workdir: str, step: int):
  """The saved segments of `workdir`'s run up to `step` (a checkpoint's), or None."""
  path = os.path.join(workdir, TrainClock.FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return [s for s in json.load(f)["segments"] if s["to"] <= step]


def total_seconds(segments) -> float | None:
  """Sum of the segments' seconds; None if any is unknown or there are none."""
  if not segments or any(s["seconds"] is None for s in segments):
    return None
  return round(sum(s["seconds"] for s in segments), 1)
