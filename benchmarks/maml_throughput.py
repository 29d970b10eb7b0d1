"""Meta-training throughput of second-order MAML (meta-iterations per second).

    python -m benchmarks.maml_throughput [--settings=5w1s,5w5s,20w1s] [--out=FILE.json]

Omniglot shapes (28x28x1), MAML's 4-conv net with stride-2 convs, random pixels
(throughput does not depend on them), the exact jitted meta-step that meta-training
runs (tasks sampled on the device, `steps_per_call` iterations per call). Each number
is the median over `--repeats` timed blocks after a warm-up call that compiles.
"""
import json
import time

import jax
import numpy as np
from absl import app, flags

from experiments.configs import meta as meta_configs
from jaxtl.meta import train
from jaxtl.runtime import log_versions

SETTINGS = {"5w1s": "omniglot_5w1s", "5w5s": "omniglot_5w5s", "20w1s": "omniglot_20w1s",
            "20w5s": "omniglot_20w5s"}
_SETTINGS = flags.DEFINE_list("settings", ["5w1s", "5w5s", "20w1s"], "Which settings.")
_BATCHING = flags.DEFINE_list("task_batching", ["auto"], "auto, vmap and/or map.")
_CALLS = flags.DEFINE_integer("calls", 5, "Jitted calls per timed block.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed blocks; the median is reported.")
_STEPS_PER_CALL = flags.DEFINE_integer("steps_per_call", 10, "Meta-iterations per call.")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")


def measure(setting: str, batching: str, calls: int, repeats: int, steps_per_call: int) -> dict:
  config = meta_configs.get_config(SETTINGS[setting])
  config.task_batching, config.steps_per_call = batching, steps_per_call
  learner = train.make_learner(config)
  # 1200 characters x 4 rotations, 20 drawings each, as in meta-training.
  data = jax.random.uniform(jax.random.PRNGKey(0), (4800, 20, 28, 28, 1))
  sampler = lambda key, d, b: train.tasks.sample_classification(key, d, b, config.way,
                                                                config.shot, config.query)
  tx = train.make_outer_optimizer(config)
  state = train.init_state(config, learner, tx, data, sampler)
  step = train.make_meta_step(learner, tx, sampler, config.meta_batch, steps_per_call)
  key = jax.random.PRNGKey(1)
  t0 = time.perf_counter()
  state, (losses, _) = step(state, data, key)
  jax.block_until_ready(losses)
  compile_seconds = time.perf_counter() - t0
  rates = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(calls):
      state, (losses, _) = step(state, data, key)
    jax.block_until_ready(losses)
    rates.append(calls * steps_per_call / (time.perf_counter() - t0))
  return {"setting": setting, "way": config.way, "shot": config.shot,
          "meta_batch": config.meta_batch, "inner_steps": config.inner_steps,
          "task_batching": learner.task_batching, "meta_iterations_per_second":
          float(np.median(rates)), "first_call_seconds": compile_seconds}


def main(argv):
  del argv
  log_versions()
  rows = [measure(s, b, _CALLS.value, _REPEATS.value, _STEPS_PER_CALL.value)
          for s in _SETTINGS.value for b in _BATCHING.value]
  device = jax.devices()[0].device_kind
  print(f"second-order MAML meta-training, {device}")
  print("| setting | tasks | inner steps | batching | meta-it/s | first call (s) |")
  print("|---|---:|---:|---|---:|---:|")
  for r in rows:
    print(f"| {r['setting']} | {r['meta_batch']} | {r['inner_steps']} | {r['task_batching']} | "
          f"{r['meta_iterations_per_second']:.2f} | {r['first_call_seconds']:.1f} |")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump({"device": device, "backend": jax.default_backend(), "results": rows}, f,
                indent=2)


if __name__ == "__main__":
  app.run(main)
