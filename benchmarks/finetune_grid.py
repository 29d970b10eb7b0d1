"""The surgical study's grid as one compiled program against the same configurations run
one at a time, side by side in one run.

    python -m benchmarks.finetune_grid [--strategies=all,block3,head] [--out=FILE.json]

Both paths deliver the same thing for K = lr x wd x seed configurations of one strategy:
every configuration's validation accuracy, and the test accuracy of each seed's pick.
  * one at a time: `jaxtl.finetune.trainer.train_and_evaluate` per configuration, as
    `experiments.multitask` and every sweep before the grid did (a run folder, its own
    compilation, a checkpoint at the end, evaluation of validation and test);
  * grid: `jaxtl.finetune.grid.train_grid` (one compilation), then `evaluate_grid` on the
    validation set for all and on the test set for the picks.
The data are the study's shapes (1000 28x28 training examples, 1000 validation, 10,000
test) with random pixels: the time does not depend on their values. The model is the
study's ResNet with random weights, saved once as the "pre-trained" run.
"""
import json
import os
import tempfile
import time

import jax
import numpy as np
from absl import app, flags

from experiments.configs import surgical as surgical_configs
from jaxtl import checkpoint, workdir
from jaxtl.data.datasets import ImageDataset
from jaxtl.finetune import grid, strategies
from jaxtl.finetune.trainer import train_and_evaluate
from jaxtl.models import build_model
from jaxtl.runtime import log_versions

_STRATEGIES = flags.DEFINE_list("strategies", ["all", "block3", "head"],
                                "Row labels of the study's strategies.")
_LRS = flags.DEFINE_list("lr_grid", ["1e-4", "1e-3", "1e-2"], "Learning rates.")
_WDS = flags.DEFINE_list("wd_grid", ["0", "1e-2"], "Weight decays.")
_SEEDS = flags.DEFINE_integer("seeds", 1, "Seeds.")
_STEPS = flags.DEFINE_integer("steps", 100, "Fine-tuning steps per configuration.")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")


def data(n, seed):
  rng = np.random.default_rng(seed)
  return ImageDataset(rng.random((n, 28, 28, 1), np.float32),
                      (np.arange(n) % 10).astype(np.int32), "random")


def time_strategy(study, label, hp, seeds, pool, val, test):
  """(one-at-a-time seconds, grid seconds) for the configurations `hp` of one strategy."""
  lrs, wds = [h[0] for h in hp], [h[1] for h in hp]
  config = study.finetune.copy_and_resolve_references()
  config.update(dict(surgical_configs.SURGICAL_ROWS)[label])
  config.num_steps = config.checkpoint_every = config.log_every = _STEPS.value
  config.optimizer = "adamw"
  model = build_model("resnet", num_classes=10, **dict(config.model_kwargs))
  variables = model.init(jax.random.PRNGKey(0), pool.images[:1], train=False)

  with tempfile.TemporaryDirectory() as root:
    src = os.path.join(root, "pretrained")
    os.makedirs(src)
    checkpoint.save_variables(src, variables)
    start = time.perf_counter()
    for k, (seed, (lr, wd)) in enumerate((s, h) for s in seeds for h in hp):
      run = config.copy_and_resolve_references()
      run.model_kwargs.conv = "xla"  # the trainer's default, as the per-run sweeps used it
      run.init_from, run.reinit, run.learning_rate, run.weight_decay, run.seed = \
          src, (), lr, wd, seed
      train_and_evaluate(run, os.path.join(root, f"run{k}"), data=(pool, val, test))
    one_at_a_time = time.perf_counter() - start

  start = time.perf_counter()
  spec = grid.GridSpec(tuple(strategies.phases(config, model.block_names())),
                       config.batch_size, config.batch_norm, chunk=study.chunk)
  index = np.stack([np.random.default_rng(s).permutation(1000) for s in seeds])
  stacked = grid.flat_configs(grid.train_grid(model, variables, spec, pool.images,
                                              pool.labels, lrs, wds, seeds, index))
  acc = grid.evaluate_grid(model, stacked, val.images, val.labels, chunk=study.chunk)
  acc = acc.mean(1).reshape(len(seeds), len(hp))
  picks = [i * len(hp) + int(np.argmax(a)) for i, a in enumerate(acc)]
  picked = jax.tree_util.tree_map(lambda a: a[np.asarray(picks)], stacked)
  grid.evaluate_grid(model, picked, test.images, test.labels, chunk=study.chunk)
  return one_at_a_time, time.perf_counter() - start


def main(argv):
  del argv
  log_versions()
  study = surgical_configs.get_config("mnist_c")
  pool, val, test = data(1000, 0), data(1000, 1), data(10000, 2)
  hp = [(float(lr), float(wd)) for lr in _LRS.value for wd in _WDS.value]
  seeds = list(range(_SEEDS.value))
  out = {"strategies": {}, "configurations_per_strategy": len(hp) * len(seeds),
         "steps": _STEPS.value, "batch_size": study.finetune.batch_size,
         "widths": list(study.finetune.model_kwargs.widths),
         "grid_conv": study.finetune.model_kwargs.conv, "grid_chunk": study.chunk,
         "one_at_a_time_conv": "xla", "machine": workdir.machine(),
         "devices": str(jax.devices())}
  for label in _STRATEGIES.value:
    one, together = time_strategy(study, label, hp, seeds, pool, val, test)
    out["strategies"][label] = {"one_at_a_time_seconds": one, "grid_seconds": together,
                                "speedup": one / together}
    print(label, out["strategies"][label], flush=True)
  rows = out["strategies"].values()
  out["one_at_a_time_seconds"] = sum(r["one_at_a_time_seconds"] for r in rows)
  out["grid_seconds"] = sum(r["grid_seconds"] for r in rows)
  out["speedup"] = out["one_at_a_time_seconds"] / out["grid_seconds"]
  print(json.dumps(out, indent=2))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(out, f, indent=2)


if __name__ == "__main__":
  app.run(main)
