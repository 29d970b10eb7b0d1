"""What bounds jaxtl's steps on this machine: each step's work as XLA counts it (floating-
point operations, bytes read and written), its measured rate, and the machine's own rates
for a large matrix product and for streaming copies, measured in the same run.

    python -m benchmarks.roofline [--settings=5w1s,5w5s] [--strategies=full,linear_probe]
        [--cached_strategies=surgical_block3] [--repeats=5] [--out=FILE.json]

A step whose time is close to flops / (matrix-product rate) is bound by arithmetic; one
that takes much longer moves data (or waits) instead, and its bytes / time against the
copy rates says how hard it leans on the caches and memory. The cases:
  * MAML: the meta-training step `benchmarks.maml_throughput` times (second-order, random
    pixels), `--steps_per_call` iterations per call. Its work is counted on a one-
    iteration build, and only for settings with one inner step: XLA counts a loop's
    body once.
  * fine-tuning: the trainer's step on the transfer experiments' ResNet
    (`benchmarks.timing.strategy_step`), as `benchmarks.step_throughput` times it; the
    `--cached_strategies` also on the frozen prefix computed once (batch norm frozen).
  * probes (`PROBES`): a large matrix product, MAML 5w1s's per-task products, and
    `x * a + b` over 256 MB (memory) and over 1 MB (cache), jitted.
All cases are timed in interleaved rounds (`benchmarks.timing.interleaved`).
"""
import json
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks import meta_step
from benchmarks.timing import (STRATEGIES, compiled_cost, interleaved, provenance,
                               roofline_bounds, stepping, strategy_step, timed)
from experiments.configs import meta as meta_configs
from jaxtl.runtime import log_versions

_SETTINGS = flags.DEFINE_list("settings", ["5w1s", "5w5s"], "MAML settings (one inner step).")
_STRATEGIES = flags.DEFINE_list("strategies", ["full", "linear_probe"],
                                "Fine-tuning strategies of the ResNet step.")
_CACHED = flags.DEFINE_list("cached_strategies", ["surgical_block3"],
                            "Strategies also timed on the cached frozen prefix.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Fine-tuning images per step.")
_STEPS_PER_CALL = flags.DEFINE_integer("steps_per_call", 10, "MAML iterations per call.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved rounds; median and range reported.")
_SECONDS = flags.DEFINE_float("seconds", 1.0, "About how long each timed block runs.")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")

# name -> (kind, operand shapes, function): the machine's rates, measured beside the steps.
PROBES = {
    "matrix product 2048x2048": ("arithmetic probe", [(2048, 2048)] * 2, jnp.matmul),
    # MAML 5w1s's largest convolution as its step runs it: patches @ kernel, per task.
    "32 products 490x576 @ 576x64": ("arithmetic probe", [(32, 490, 576), (32, 576, 64)],
                                     jnp.matmul),
    "copy 256 MB (memory)": ("memory probe", [(2 ** 26,)], lambda a: a * 1.0001 + 1.0),
    "copy 1 MB (cache)": ("memory probe", [(2 ** 18,)], lambda a: a * 1.0001 + 1.0)}


def _calls_for(block, seconds: float) -> int:
  """Calls that take about `seconds`, timed on one call after a warm-up call."""
  block(1)
  t0 = time.perf_counter()
  block(1)
  return max(1, round(seconds / (time.perf_counter() - t0)))


def probe_case(name: str):
  kind, shapes, fn = PROBES[name]
  jitted, args = jax.jit(fn), [jnp.ones(shape, jnp.float32) for shape in shapes]
  return {"case": name, "kind": kind, **compiled_cost(jitted, *args)}, timed(
      lambda: jitted(*args))


def maml_case(setting: str, steps_per_call: int):
  one_step = [s for s, v in meta_step.SETTINGS.items()
              if meta_configs.get_config(v).inner_steps == 1]
  if setting not in one_step:  # XLA would count a longer inner loop once
    raise ValueError(f"Unknown or multi-step setting {setting!r}; valid (one inner step): "
                     f"{one_step}.")
  config = meta_configs.get_config(meta_step.SETTINGS[setting])
  config.steps_per_call = 1
  _, state, data, step = meta_step.build(config)
  cost = compiled_cost(step, state, data, jax.random.PRNGKey(1))
  _, block = meta_step.prepare(setting, "auto", "auto", steps_per_call)
  return {"case": f"MAML {setting}", "kind": "maml", **cost}, block


def finetune_case(strategy: str, batch_size: int, cached: bool = False):
  step, state, args, _ = strategy_step(STRATEGIES[strategy], batch_size, 28, "xla", cached)
  cost = compiled_cost(step, state, *args)
  where = " on the cached prefix" if cached else ""
  return {"case": f"fine-tuning {strategy}{where}, batch {batch_size}", "kind": "finetune",
          **cost}, timed(stepping(step, state, args))


def main(argv):
  del argv
  log_versions()
  prepared = [probe_case(name) for name in PROBES]
  prepared += [maml_case(s, _STEPS_PER_CALL.value) for s in _SETTINGS.value]
  prepared += [finetune_case(s, _BATCH.value) for s in _STRATEGIES.value]
  prepared += [finetune_case(s, _BATCH.value, cached=True) for s in _CACHED.value]
  cases = [(row, block, _calls_for(block, _SECONDS.value)) for row, block in prepared]
  rows = roofline_bounds(interleaved(cases, _REPEATS.value, unit="per_second"))
  for r in rows:
    print(f"{r['case']}: {r['ms']:.2f} ms, {r['gflop']:.3f} GFLOP, {r['gbytes']:.3f} GB, "
          f"{r['gflop_per_s']:.1f} GFLOP/s, {r['gbytes_per_s']:.1f} GB/s")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump({"backend": jax.default_backend(), **provenance("benchmarks.roofline"),
                 "results": rows}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
