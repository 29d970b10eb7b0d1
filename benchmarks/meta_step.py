"""The jitted meta-training step that the meta-learning benchmarks time (no flags here)."""
import time

import jax
import numpy as np

from experiments.configs import meta as meta_configs
from jaxtl import sharding
from jaxtl.meta import train

SETTINGS = {"sinusoid": "sinusoid", "5w1s": "omniglot_5w1s", "5w5s": "omniglot_5w5s", "20w1s": "omniglot_20w1s",
            "20w5s": "omniglot_20w5s", "mlp5w1s": "omniglot_5w1s_mlp",
            "mlp5w5s": "omniglot_5w5s_mlp"}


def build(config, num_classes: int = 4800, devices: int = 1):
  """(learner, state, random class-major data, jitted step) for `config`; by default
  1200 characters x 4 rotations, 20 drawings each, as in meta-training (sinusoids: no
  data, the tasks are drawn inside the step). `devices` > 1: the meta-batch split over
  that many devices, state and data replicated, as meta-training with `num_devices`."""
  learner = train.make_learner(config)
  if config.dataset == "sinusoid":
    data, sampler = None, train.make_task_data(config).train_sampler
  else:
    data = jax.random.uniform(jax.random.PRNGKey(0), (num_classes, 20, 28, 28, 1))
    sampler = lambda key, d, b: train.tasks.sample_classification(key, d, b, config.way,
                                                                  config.shot, config.query)
  tx = train.make_outer_optimizer(config)
  state = train.init_state(config, learner, tx, data, sampler)
  mesh = None
  if devices > 1:
    mesh = sharding.make_mesh(devices, config.meta_batch, "meta_batch")
    state, data = sharding.replicate((state, data), mesh)
  step = train.make_meta_step(learner, tx, sampler, config.meta_batch, config.steps_per_call,
                              mesh)
  return learner, state, data, step


def prepare(setting: str, batching: str, conv: str, steps_per_call: int,
            algorithm: str = "maml", devices: int = 1):
  """(row, block): the row describing `algorithm` on `setting` with random pixels (over
  `devices` devices), its first (compiling) call done, and block(calls) ->
  meta-iterations per second over `calls` jitted calls."""
  config = meta_configs.get_config(SETTINGS[setting])
  config.task_batching, config.steps_per_call = batching, steps_per_call
  config.algorithm = algorithm
  if config.model != "mlp":
    config.model_kwargs.conv = conv
  learner, state, data, step = build(config, devices=devices)
  key = jax.random.PRNGKey(1)
  box = {}
  t0 = time.perf_counter()
  box["state"], (losses, _) = step(state, data, key)
  jax.block_until_ready(losses)
  compile_seconds = time.perf_counter() - t0

  def block(calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
      box["state"], (losses, _) = step(box["state"], data, key)
    jax.block_until_ready(losses)
    return calls * steps_per_call / (time.perf_counter() - t0)
  conv = getattr(learner.model, "conv", "none")
  on = f", {devices} {jax.default_backend().upper()} devices" if devices > 1 else ""
  row = {"setting": setting, "method": f"jaxtl ({learner.task_batching}, conv={conv}{on})",
         "first_call_seconds": compile_seconds, **shape_of(config)}
  return row, block


def measure(setting: str, batching: str, conv: str, calls: int, repeats: int,
            steps_per_call: int, algorithm: str = "maml") -> dict:
  """`prepare`'s row with the median meta-iterations per second over `repeats` blocks."""
  row, block = prepare(setting, batching, conv, steps_per_call, algorithm)
  rates = [block(calls) for _ in range(repeats)]
  return dict(row, meta_iterations_per_second=float(np.median(rates)))


def shape_of(config) -> dict:
  return {"way": config.way, "shot": config.shot, "meta_batch": config.meta_batch,
          "inner_steps": config.inner_steps}
