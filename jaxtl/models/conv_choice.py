"""`conv="measured"`: for each convolution shape, the kernel (XLA's or im2col) whose forward
and backward pass runs faster on this machine, measured at first use, kept on disk per
machine and logged once.

The table lives in `$JAXTL_CACHE_DIR/conv_choice.json` (default `~/.cache/jaxtl`), keyed by
the machine (processor, backend, device, jax version) and then by the convolution's shape
(input, kernel, strides, padding, dtype). Measuring happens while the model is traced
(`jax.ensure_compile_time_eval`), once per shape and machine: a first run pays a few
hundred milliseconds per shape, later runs read the table. Both kernels compute the same
function with the same parameters, so the choice moves no number beyond float rounding.
Under `vmap` (MAML's per-task weights) a module sees one task's shapes while the compiled
operation is batched, so meta-training keeps `conv="auto"`.
"""
import json
import os
import platform

import jax
from absl import logging

_TABLE = {}  # this machine's choices: {shape key: {"choice": impl, "ms": {impl: ms}}}
_LOADED = []  # [path] once the table was read from it


def cache_path() -> str:
  root = os.environ.get("JAXTL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                           "jaxtl")
  return os.path.join(root, "conv_choice.json")


def _processor() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine() -> str:
  """What a timing depends on: the processor, the backend and its device, jax's version."""
  device = jax.devices()[0]
  return (f"{_processor()} | {os.cpu_count()} cores | {jax.default_backend()} "
          f"{getattr(device, 'device_kind', '')} | jax {jax.__version__}")


def shape_key(x_shape, kernel_shape, strides, padding, dtype) -> str:
  return (f"x{tuple(x_shape)} k{tuple(kernel_shape)} s{tuple(strides)} p{padding} "
          f"{jax.numpy.dtype(dtype).name}")


def _read_all(path: str) -> dict:
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _table() -> dict:
  path = cache_path()
  if _LOADED != [path]:  # first use, or another cache directory (tests)
    _TABLE.clear()
    _TABLE.update(_read_all(path).get(machine(), {}))
    _LOADED[:] = [path]
  return _TABLE


def choose(key: str, measure) -> str:
  """The faster kernel for the convolution `key`: from the table, or `measure()`
  ({impl: milliseconds}) run once, eagerly even inside a trace, and saved."""
  table = _table()
  if key not in table:
    with jax.ensure_compile_time_eval():
      ms = {impl: float(t) for impl, t in measure().items()}
    table[key] = {"choice": min(ms, key=ms.get), "ms": ms}
    logging.info("conv %s on this machine: %s (forward + backward, ms: %s)", key,
                 table[key]["choice"], ", ".join(f"{k} {v:.2f}" for k, v in ms.items()))
    path = cache_path()
    everything = _read_all(path)
    everything.setdefault(machine(), {})[key] = table[key]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
      json.dump(everything, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)  # whole or not at all
  return table[key]["choice"]
