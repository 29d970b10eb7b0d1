"""Run folders: refuse finished runs, pin the config of an unfinished one, detect NaNs."""
import json
import os

import jax
import numpy as np


class FinishedRunError(RuntimeError):
  """The workdir already holds a finished run."""


def prepare(config, workdir: str):
  """Creates `workdir`; refuses one holding a finished run or an unfinished run of another
  config (so that a resumed run is the run that was started)."""
  os.makedirs(workdir, exist_ok=True)
  if os.path.exists(os.path.join(workdir, "results.json")):
    raise FinishedRunError(f"{workdir} already holds a finished run (results.json). Use "
                           f"another --workdir, or delete that folder to run again.")
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json_best_effort())
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if diff:
      raise ValueError(f"{workdir} holds an unfinished run with another config (fields "
                       f"{diff} differ); resume with the same config or use another workdir.")
  else:
    with open(path + ".tmp", "w") as f:
      json.dump(current, f, indent=2)
    os.replace(path + ".tmp", path)


def first_nonfinite(losses, first_step: int):
  """The step of the first non-finite value in `losses` (logged from `first_step`), or None."""
  values = np.asarray(jax.device_get(losses)).reshape(-1)
  bad = np.flatnonzero(~np.isfinite(values))
  return None if bad.size == 0 else first_step + int(bad[0])
