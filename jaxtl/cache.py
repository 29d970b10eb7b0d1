"""Cached results keyed by what produced them: `cached(path, key, compute)`.

A cell (a grid of a study, a pre-training run's metrics) is saved with its key: the
config that chose it, the code version (a hash of the library's sources) and hashes of
its inputs (pre-trained variables, data provenance). A saved cell is reused only when
the key is equal; otherwise the study stops with one line naming the fields that differ
(`on_mismatch="error"`, the default: nothing computed is lost) or recomputes it
(`on_mismatch="recompute"`). Every cell and every results.json carry a `stamp`: the git
commit, whether the tree was dirty, the code hash and the library versions.
"""
import functools
import hashlib
import json
import os
import platform
import subprocess
import time

import numpy as np
from absl import logging

from jaxtl import runtime
from jaxtl.errors import ConfigError

PACKAGE = os.path.dirname(os.path.abspath(__file__))
ON_MISMATCH = ("error", "recompute")


class StaleCacheError(ConfigError):
  """A saved cell was computed from another config, code version or input."""


@functools.lru_cache(maxsize=None)
def code_hash() -> str:
  """sha256 (16 hex digits) of the library's Python sources: what a cell's numbers
  depend on, unlike a commit hash, which changes when results are committed."""
  digest = hashlib.sha256()
  for root, dirs, files in os.walk(PACKAGE):
    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
    for name in sorted(f for f in files if f.endswith(".py")):
      path = os.path.join(root, name)
      digest.update(os.path.relpath(path, PACKAGE).encode())
      with open(path, "rb") as f:
        digest.update(f.read())
  return digest.hexdigest()[:16]


def _git(*args) -> str | None:
  try:
    out = subprocess.run(["git", *args], cwd=PACKAGE, capture_output=True, text=True,
                         timeout=10, check=True)
    return out.stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


@functools.lru_cache(maxsize=None)
def stamp() -> dict:
  """The code version and library versions a result was produced with."""
  import jax  # pylint: disable=import-outside-toplevel
  versions = {"python": platform.python_version(), "jax": jax.__version__,
              "numpy": np.__version__}
  for name in ("jaxlib", "flax", "optax", "scipy"):
    try:
      versions[name] = __import__(name).__version__
    except (ImportError, AttributeError):
      versions[name] = None
  status = _git("status", "--porcelain", "--untracked-files=no", "--", PACKAGE)
  return {"commit": _git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None
          else None, "code_hash": code_hash(), "versions": versions}


def tree_hash(tree) -> str:
  """sha256 (16 hex digits) of a pytree of arrays: paths, dtypes, shapes and bytes."""
  import jax  # pylint: disable=import-outside-toplevel
  digest = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  for path, leaf in leaves:
    a = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}|".encode())
    digest.update(a.tobytes())
  return digest.hexdigest()[:16]


def path_hash(path: str) -> str:
  """sha256 (16 hex digits) of every file under `path` (names and contents): a run
  folder or checkpoint given as an input."""
  digest = hashlib.sha256()
  for root, dirs, files in os.walk(path):
    dirs.sort()
    for name in sorted(files):
      full = os.path.join(root, name)
      digest.update(os.path.relpath(full, path).encode())
      with open(full, "rb") as f:
        digest.update(f.read())
  return digest.hexdigest()[:16]


def config_key(config, enumerating=()) -> dict:
  """A study config as part of a cell's key: without the fields that only enumerate the
  cells (a cell's name says which it is) and the fields of how it executes."""
  value = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return normalize({k: v for k, v in value.items() if k not in set(enumerating) | {
      "data_dir", "on_mismatch"}})


def json_hash(value) -> str:
  return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def normalize(value):
  """JSON round trip: tuples become lists, so a key compares equal to its saved self."""
  return json.loads(json.dumps(value, sort_keys=True, default=str))


def differences(saved, key, prefix: str = "") -> list:
  """Dotted names of the fields in which two keys differ."""
  if isinstance(saved, dict) and isinstance(key, dict):
    out = []
    for k in sorted(set(saved) | set(key)):
      out += differences(saved.get(k), key.get(k), f"{prefix}{k}.")
    return out
  return [] if saved == key else [prefix.rstrip(".") or "(value)"]


def cached(path: str, key: dict, compute, on_mismatch: str = "error"):
  """The value saved at `path` under an equal `key`, else `compute()` saved there with
  its key and stamp (atomically: a cell appears whole or not at all)."""
  if on_mismatch not in ON_MISMATCH:
    raise ConfigError(f"Unknown on_mismatch {on_mismatch!r}; valid: {ON_MISMATCH}.")
  key = normalize(key)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    diff = differences(saved.get("key"), key)
    if not diff:
      return saved["value"]
    if on_mismatch == "error":
      raise StaleCacheError(
          f"{path} was computed with other {', '.join(diff[:6])}"
          f"{' ...' if len(diff) > 6 else ''}; rerun with on_mismatch=recompute (or "
          "--config.on_mismatch=recompute), another workdir, or the code version it names.")
  start = time.perf_counter()
  value = compute()
  logging.info("%s computed in %.0fs", path, time.perf_counter() - start)  # a study's pulse
  if runtime.is_writer():
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
      json.dump({"key": key, "stamp": stamp(), "value": value}, f, indent=1, default=float)
    os.replace(path + ".tmp", path)
  return value


def cached_cell(workdir: str, name: str, compute, key: dict,
                on_mismatch: str = "error") -> dict:
  """A cell of a sweep or study, saved as workdir/cells/NAME.json with its `key` (config,
  code, inputs) and the cell's name: reused only under an equal key (`cached`)."""
  path = os.path.join(workdir, "cells", f"{name}.json")
  return cached(path, dict(key, cell=name, code=code_hash()), compute, on_mismatch)
