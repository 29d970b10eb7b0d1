"""Memory, compile time and step time of second-order MAML against the number of inner
steps, with and without rematerialising the inner steps (`config.remat`).

    python -m benchmarks.maml_memory [--setting=20w1s] [--inner_steps=1,5,10,25,50]
        [--time_calls=2] [--out=FILE.json]

Peak memory is XLA's own account of the compiled meta-iteration (arguments + outputs +
temporaries from `Compiled.memory_analysis()`): the same number on every backend and
known before anything runs, so a configuration that would not fit is seen without
running it. On a GPU the device's measured peak is reported beside it.
"""
import json
import time

import jax
from absl import app, flags

from benchmarks.meta_step import SETTINGS, build
from experiments.configs import meta as meta_configs
from jaxtl.studies import benchmark_tables
from jaxtl.runtime import log_versions

_SETTING = flags.DEFINE_string("setting", "20w1s", f"One of {list(SETTINGS)}.")
_STEPS = flags.DEFINE_list("inner_steps", ["1", "5", "10", "25", "50"], "Inner-step counts.")
_TIME_CALLS = flags.DEFINE_integer("time_calls", 2, "Timed meta-iterations (0: compile only).")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")

GIB = 2.0 ** 30


def measure(setting: str, inner_steps: int, remat: bool, time_calls: int) -> dict:
  config = meta_configs.get_config(SETTINGS[setting])
  config.inner_steps, config.remat, config.steps_per_call = inner_steps, remat, 1
  _, state, data, step = build(config, num_classes=200)
  key = jax.random.PRNGKey(1)
  t0 = time.perf_counter()
  compiled = step.lower(state, data, key).compile()
  compile_seconds = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  row = {"setting": setting, "inner_steps": inner_steps, "remat": remat,
         "meta_batch": config.meta_batch, "compile_seconds": compile_seconds,
         "temp_gib": mem.temp_size_in_bytes / GIB,
         "peak_gib": (mem.temp_size_in_bytes + mem.argument_size_in_bytes
                      + mem.output_size_in_bytes - mem.alias_size_in_bytes) / GIB}
  if time_calls:
    state, (losses, _) = compiled(state, data, key)
    jax.block_until_ready(losses)
    t0 = time.perf_counter()
    for _ in range(time_calls):
      state, (losses, _) = compiled(state, data, key)
    jax.block_until_ready(losses)
    row["seconds_per_meta_iteration"] = (time.perf_counter() - t0) / time_calls
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
      row["device_peak_gib_so_far"] = stats["peak_bytes_in_use"] / GIB
  return row


def main(argv):
  del argv
  log_versions()
  rows = [measure(_SETTING.value, int(s), remat, _TIME_CALLS.value)
          for s in _STEPS.value for remat in (False, True)]
  device = jax.devices()[0].device_kind
  print(f"second-order MAML, {_SETTING.value}, meta-batch {rows[0]['meta_batch']}, {device}")
  print("| inner steps | remat | peak memory (GiB) | temporaries (GiB) | compile (s) | "
        "s / meta-iteration |")
  print("|---:|---|---:|---:|---:|---:|")
  for r in rows:
    t = r.get("seconds_per_meta_iteration")
    print(f"| {r['inner_steps']} | {r['remat']} | {r['peak_gib']:.3f} | {r['temp_gib']:.3f} | "
          f"{r['compile_seconds']:.1f} | {'' if t is None else f'{t:.2f}'} |")
  for remat, mib in benchmark_tables.memory_growth(rows).items():
    print(f"remat={remat}: {mib:.1f} MiB more peak memory per inner step")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump({"device": device, "backend": jax.default_backend(), "results": rows}, f,
                indent=2)


if __name__ == "__main__":
  app.run(main)
