"""Pre-training throughput per objective, and the share of a step spent making its inputs
(augmentations, rotations, masks), side by side in one run.

    python -m benchmarks.objectives_throughput [--batch_size=128] [--out=FILE.json]

MAML's Conv4 on random 28x28 images (Omniglot's size; step time does not depend on pixel
values), the fine-tuning trainer's jitted step (`make_train_step` with the objective).
Each objective's step and its `prepare` alone (jitted the same way) are timed in blocks
of `--steps` calls; the objectives' blocks are interleaved (A B C D A B C D ...) so that
a machine's slow phase hits them all, and the median and range over `--repeats` blocks
are reported. Throughput counts source images per second: a rotation step feeds the
network 4 copies of each, a SimCLR step 2 views. The input share is prepare's time over
the step's, an upper bound: inside the step XLA may fuse it with the first layer.
"""
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments.configs import finetune as finetune_configs
from jaxtl import objectives, partition
from jaxtl.finetune import trainer
from jaxtl.models import build_model
from jaxtl.runtime import log_versions

_BATCH = flags.DEFINE_integer("batch_size", 128, "Source images per step.")
_STEPS = flags.DEFINE_integer("steps", 10, "Calls per timed block.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed blocks per objective, interleaved.")
_FEATURES = flags.DEFINE_integer("features", 64, "Conv4 width.")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")

SHAPE = (28, 28, 1)


def make_case(name: str, batch_size: int, features: int):
  """(step thunk, prepare thunk) of one objective, compiled and warmed up."""
  config = finetune_configs.get_config("digits")
  config.objective = name
  objective = objectives.make(name, {}, 10, SHAPE)
  model = objectives.network_for(
      build_model("conv4", num_classes=objective.num_outputs, features=features,
                  downsample="stride", pool="flatten"), objective)
  n = batch_size * 4
  x = jax.random.uniform(jax.random.PRNGKey(0), (n, *SHAPE))
  y = jnp.arange(n) % 10
  variables = model.init(jax.random.PRNGKey(1), x[:1], train=False)
  labels = partition.label_params(variables["params"], ((".*", 1.0),))
  tx = trainer.make_optimizer(config, labels)
  step = trainer.make_train_step(model, tx, labels, config, batch_size, n, None, objective,
                                 jax.random.PRNGKey(3))
  order = trainer.epoch_order(jax.random.PRNGKey(2), 0, n)
  box = {"state": dict(step=jnp.zeros((), jnp.int32), params=variables["params"],
                       batch_stats=variables["batch_stats"],
                       opt_state=tx.init(variables["params"]))}
  prepare = jax.jit(objective.prepare)
  batch_x, batch_y = x[:batch_size], y[:batch_size]

  def run_step():
    box["state"], loss = step(box["state"], {}, x, y, order)
    return loss

  def run_prepare():  # a new draw each call, as in training
    box["calls"] = box.get("calls", 0) + 1
    key = jax.random.fold_in(jax.random.PRNGKey(4), box["calls"])
    return jax.tree_util.tree_leaves(prepare(key, batch_x, batch_y))[0]

  for thunk in (run_step, run_prepare):
    for _ in range(3):
      jax.block_until_ready(thunk())
  return run_step, run_prepare


def time_block(thunk, steps: int) -> float:
  """Seconds per call over `steps` calls, waiting for the last."""
  t0 = time.perf_counter()
  for _ in range(steps):
    out = thunk()
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / steps


def main(argv):
  del argv
  log_versions()
  names = objectives.OBJECTIVES
  cases = {name: make_case(name, _BATCH.value, _FEATURES.value) for name in names}
  times = {name: {"step": [], "prepare": []} for name in names}
  for _ in range(_REPEATS.value):  # interleaved: A B C D A B C D ...
    for name in names:
      run_step, run_prepare = cases[name]
      times[name]["step"].append(time_block(run_step, _STEPS.value))
      times[name]["prepare"].append(time_block(run_prepare, _STEPS.value))
  rows = {}
  for name in names:
    step, prep = np.array(times[name]["step"]), np.array(times[name]["prepare"])
    rate = _BATCH.value / step
    rows[name] = {"images_per_second": float(np.median(rate)),
                  "images_per_second_range": [float(rate.min()), float(rate.max())],
                  "step_ms": float(1e3 * np.median(step)),
                  "prepare_ms": float(1e3 * np.median(prep)),
                  "input_share": float(np.median(prep) / np.median(step))}
    print(f"{name:>10}: {rows[name]['images_per_second']:8.0f} images/s "
          f"({rate.min():.0f}-{rate.max():.0f}), step {rows[name]['step_ms']:.1f} ms, "
          f"inputs {rows[name]['prepare_ms']:.1f} ms ({100 * rows[name]['input_share']:.0f}%)")
  out = {"benchmark": "objectives_throughput", "batch_size": _BATCH.value,
         "features": _FEATURES.value, "steps": _STEPS.value, "repeats": _REPEATS.value,
         "image_shape": list(SHAPE), "machine": _machine(), "objectives": rows}
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(out, f, indent=2)


def _machine() -> str:
  from jaxtl.workdir import machine  # pylint: disable=import-outside-toplevel
  return machine()


if __name__ == "__main__":
  app.run(main)
