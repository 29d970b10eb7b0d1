"""Checkpoints (orbax, written atomically) and loading pretrained weights into a new model."""
import os
import re
from typing import Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import traverse_util

from jaxtl import state_dict
from jaxtl.errors import ConfigError, MissingInputError
from jaxtl.models.torchvision import variables_from_state_dict


VARIABLES_DIR = "variables"  # a finished run's final model variables, for fine-tuning


def manager(workdir: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """Train-state checkpoints under `workdir/checkpoints/<step>`.

  Orbax writes each into a temporary folder and renames it when complete, so a run
  killed while saving leaves the previous checkpoint intact.
  """
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


def restore_latest(ckpts: ocp.CheckpointManager, target):
  """(step, state) from the newest checkpoint of `ckpts` that restores, or (None, None)
  without checkpoints. `target` is the state's template (arrays with their shardings),
  or a function step -> template (fine-tuning phases have different states).

  Orbax's rename makes a checkpoint appear only once complete, but a file can still be
  truncated or damaged later (a full disk, a copy cut short): such a checkpoint is
  deleted, with a warning naming it and the step resumed from instead, so that the run
  can save that step again. If no checkpoint restores, the newest one's error is raised:
  a template that fits none is a bug, not damage. Every process calls it."""
  bad, error = [], None
  for step in sorted(ckpts.all_steps(), reverse=True):
    template = target(step) if callable(target) else target
    try:
      state = ckpts.restore(step, args=ocp.args.StandardRestore(template))
    except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many kinds)
      bad.append(step)
      error = error or e
      continue
    if bad:
      logging.warning("Checkpoint step %s in %s cannot be restored (%s: %s); resuming from "
                      "the previous checkpoint, step %d, and deleting step %s.",
                      bad[0], ckpts.directory, type(error).__name__, str(error)[:300], step,
                      ", ".join(map(str, bad)))
      for b in bad:
        ckpts.delete(b)
    return step, state
  if error is not None:
    raise error
  return None, None


def save_variables(workdir: str, variables) -> str:
  """Saves final variables under `workdir/variables`. In a multi-process run every
  process calls it (orbax writes once and synchronises the processes); the arrays are
  replicated, so each process holds all their values."""
  path = os.path.join(os.path.abspath(workdir), VARIABLES_DIR)
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(path, jax.device_get(variables), force=True)
  ckpt.wait_until_finished()
  return path


def load_variables(path: str):
  """Variables saved by `save_variables`; `path` is that folder or the run's workdir, or
  a torchvision / timm ResNet's weights file (.pth, .safetensors: `jaxtl.state_dict`,
  mapped to `jaxtl.models.TorchResNet`'s variables)."""
  if state_dict.is_weights_file(path):
    return variables_from_state_dict(state_dict.read_state_dict(path))
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, VARIABLES_DIR)):
    path = os.path.join(path, VARIABLES_DIR)
  if not os.path.isfile(os.path.join(path, "_METADATA")):  # e.g. a run still in progress
    raise MissingInputError(f"No saved variables at {path}: pass the workdir of a finished "
                            f"pre-training run (it holds {VARIABLES_DIR}/).")
  return ocp.StandardCheckpointer().restore(path)


def load_pretrained(new_variables, pretrained_variables, reinit: Sequence[str] = (r"^head/",),
                    strict: bool = False):
  """Merges pretrained arrays into `new_variables`, whose structure wins.

  Leaves of `new_variables` (paths like `params/block1/conv/kernel`, matched without the
  collection prefix) whose path matches a regex in `reinit` keep their fresh value;
  all others must exist in the pretrained tree with the same shape. `strict`: pretrained
  arrays the model has no use for are an error too (imported weights: another
  architecture), rather than skipped (a jaxtl objective's decoder, say).

  Returns:
    (variables, report) with report = {"loaded": [...], "reinitialised": [...],
    "skipped": [pretrained paths the new model has no use for]}.
  Raises:
    ConfigError naming every leaf that is missing or of another shape, one per line.
  """
  new = traverse_util.flatten_dict(new_variables, sep="/")
  old = traverse_util.flatten_dict(pretrained_variables, sep="/")
  patterns = [re.compile(p) for p in reinit]
  out, report, problems = {}, {"loaded": [], "reinitialised": [], "skipped": []}, []
  for path, value in new.items():
    inner = path.split("/", 1)[1] if "/" in path else path  # drop "params/" or "batch_stats/"
    if any(p.search(inner) for p in patterns):
      out[path] = value
      report["reinitialised"].append(path)
    elif path not in old:
      problems.append(f"{path}: not in the checkpoint")
    elif np.shape(old[path]) != np.shape(value):
      problems.append(f"{path}: checkpoint shape {np.shape(old[path])} != model shape "
                      f"{np.shape(value)}")
    else:
      out[path] = np.asarray(old[path], dtype=np.asarray(value).dtype)
      report["loaded"].append(path)
  report["skipped"] = [p for p in old if p not in new]
  if strict:
    problems += [f"{p}: in the checkpoint, not in the model" for p in report["skipped"]]
  if problems:
    raise ConfigError(f"The checkpoint does not fit the model: {len(problems)} arrays "
                      "(another architecture or size? re-initialise leaves with reinit "
                      f"patterns; now {list(reinit)}):\n  " + "\n  ".join(problems))
  return traverse_util.unflatten_dict(out, sep="/"), report


def format_report(report) -> str:
  return (f"loaded {len(report['loaded'])} arrays; re-initialised {report['reinitialised']}; "
          f"skipped {report['skipped']}")
