"""Run folders: refuse finished runs, pin the config of an unfinished one, detect NaNs."""
import json
import os

import jax
import numpy as np


class FinishedRunError(RuntimeError):
  """The workdir already holds a finished run."""


# How a run executes, not what it computes (each meta-iteration's tasks come from the
# iteration number): a run started on CPU may resume on a GPU with other values of these.
EXECUTION_FIELDS = ("data_dir", "log_every", "checkpoint_every", "steps_per_call",
                    "num_devices", "task_batching", "remat")


def saved_config(workdir: str):
  """The config a run in `workdir` was started with (config.json, else the config in
  results.json), as plain JSON; None if neither exists."""
  for file, key in [("config.json", None), ("results.json", "config")]:
    path = os.path.join(workdir, file)
    if os.path.exists(path):
      with open(path) as f:
        saved = json.load(f)
      return saved[key] if key else saved
  return None


def prepare(config, workdir: str):
  """Creates `workdir`; refuses one holding a finished run or an unfinished run of another
  config, EXECUTION_FIELDS aside (so that a resumed run is the run that was started)."""
  os.makedirs(workdir, exist_ok=True)
  if os.path.exists(os.path.join(workdir, "results.json")):
    raise FinishedRunError(f"{workdir} already holds a finished run (results.json). Use "
                           f"another --workdir, or delete that folder to run again.")
  current = json.loads(config.to_json_best_effort())
  saved = saved_config(workdir)  # config.json: results.json was ruled out above
  if saved is not None:
    diff = sorted(k for k in set(saved) | set(current)
                  if saved.get(k) != current.get(k) and k not in EXECUTION_FIELDS)
    if diff:
      raise ValueError(f"{workdir} holds an unfinished run with another config (fields "
                       f"{diff} differ); resume with the same config or use another workdir.")
  else:
    path = os.path.join(workdir, "config.json")
    with open(path + ".tmp", "w") as f:
      json.dump(current, f, indent=2)
    os.replace(path + ".tmp", path)


def check_finite(losses, first_step: int, last_checkpoint, workdir: str, hint: str):
  """Raises FloatingPointError naming the first step whose loss in `losses` (the losses of
  steps `first_step`, `first_step + 1`, ...) is not finite; called before each checkpoint,
  so the last checkpoint is still good."""
  values = np.asarray(jax.device_get(losses)).reshape(-1)
  bad = np.flatnonzero(~np.isfinite(values))
  if bad.size:
    raise FloatingPointError(
        f"Loss is not finite at step {first_step + int(bad[0])}; the last good checkpoint is "
        f"step {last_checkpoint} in {workdir}/checkpoints. {hint}")
