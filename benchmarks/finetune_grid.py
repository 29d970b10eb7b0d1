"""The surgical study's grid as one compiled program against the same configurations run
one at a time, side by side in one run.

    python -m benchmarks.finetune_grid [--strategies=all,block3,head] [--out=FILE.json]

Every arm delivers the same thing for K = lr x wd x seed configurations of one strategy:
every configuration's validation accuracy, and the test accuracy of each seed's pick.
  * process per configuration: the same, each configuration a fresh Python process (a
    shell loop over launches: imports, data and compilation paid every time);
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
import subprocess
import sys
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
_PROCESSES = flags.DEFINE_bool("processes", True,
                               "Also time one process per configuration (a shell loop).")
_ONLY = flags.DEFINE_integer("only", -1, "Internal: run configuration K alone, in --root.")
_ROOT = flags.DEFINE_string("root", "", "Internal: the folder holding the pre-trained run.")


def data(n, seed):
  rng = np.random.default_rng(seed)
  return ImageDataset(rng.random((n, 28, 28, 1), np.float32),
                      (np.arange(n) % 10).astype(np.int32), "random")


def strategy_config(study, label):
  config = study.finetune.copy_and_resolve_references()
  config.update(dict(surgical_configs.SURGICAL_ROWS)[label])
  config.num_steps = config.checkpoint_every = config.log_every = _STEPS.value
  config.optimizer = "adamw"
  return config


def train_one(config, root, name, seed, lr, wd, pool, val, test):
  """Configuration k as a run of its own, as the per-run sweeps did it."""
  run = config.copy_and_resolve_references()
  run.model_kwargs.conv = "xla"  # the trainer's default, as the per-run sweeps used it
  run.init_from, run.reinit, run.learning_rate, run.weight_decay, run.seed = \
      os.path.join(root, "pretrained"), (), lr, wd, seed
  train_and_evaluate(run, os.path.join(root, name), data=(pool, val, test))


def configurations(hp, seeds):
  return [(s, lr, wd) for s in seeds for lr, wd in hp]


def time_strategy(study, label, hp, seeds, pool, val, test):
  """{arm: seconds} for the configurations `hp` x `seeds` of one strategy."""
  lrs, wds = [h[0] for h in hp], [h[1] for h in hp]
  config = strategy_config(study, label)
  model = build_model("resnet", num_classes=10, **dict(config.model_kwargs))
  variables = model.init(jax.random.PRNGKey(0), pool.images[:1], train=False)
  seconds = {}
  with tempfile.TemporaryDirectory() as root:
    os.makedirs(os.path.join(root, "pretrained"))
    checkpoint.save_variables(os.path.join(root, "pretrained"), variables)
    start = time.perf_counter()
    for k, (seed, lr, wd) in enumerate(configurations(hp, seeds)):
      train_one(config, root, f"run{k}", seed, lr, wd, pool, val, test)
    seconds["one_at_a_time"] = time.perf_counter() - start
    if _PROCESSES.value:
      start = time.perf_counter()
      for k in range(len(hp) * len(seeds)):  # a shell loop over launches would do this
        subprocess.run([sys.executable, "-m", "benchmarks.finetune_grid", f"--only={k}",
                        f"--root={root}", f"--strategies={label}", f"--steps={_STEPS.value}",
                        f"--lr_grid={','.join(_LRS.value)}", f"--wd_grid={','.join(_WDS.value)}",
                        f"--seeds={_SEEDS.value}"], check=True)
      seconds["process_per_configuration"] = time.perf_counter() - start

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
  seconds["grid"] = time.perf_counter() - start
  return seconds


def run_only(k):
  """The child of the process-per-configuration arm: configuration k, then exit."""
  study = surgical_configs.get_config("mnist_c")
  hp = [(float(lr), float(wd)) for lr in _LRS.value for wd in _WDS.value]
  seed, lr, wd = configurations(hp, list(range(_SEEDS.value)))[k]
  train_one(strategy_config(study, _STRATEGIES.value[0]), _ROOT.value, f"process{k}", seed,
            lr, wd, data(1000, 0), data(1000, 1), data(10000, 2))


def main(argv):
  del argv
  if _ONLY.value >= 0:
    return run_only(_ONLY.value)
  log_versions()
  study = surgical_configs.get_config("mnist_c")
  pool, val, test = data(1000, 0), data(1000, 1), data(10000, 2)
  hp = [(float(lr), float(wd)) for lr in _LRS.value for wd in _WDS.value]
  seeds = list(range(_SEEDS.value))
  out = {"command": "python -m benchmarks.finetune_grid " + " ".join(sys.argv[1:]),
         "strategies": {}, "configurations_per_strategy": len(hp) * len(seeds),
         "steps": _STEPS.value, "batch_size": study.finetune.batch_size,
         "widths": list(study.finetune.model_kwargs.widths),
         "grid_conv": study.finetune.model_kwargs.conv, "grid_chunk": study.chunk,
         "one_at_a_time_conv": "xla", "machine": workdir.machine(),
         "devices": str(jax.devices())}
  for label in _STRATEGIES.value:
    out["strategies"][label] = time_strategy(study, label, hp, seeds, pool, val, test)
    print(label, out["strategies"][label], flush=True)
  arms = next(iter(out["strategies"].values()))
  out["total"] = {arm: sum(r[arm] for r in out["strategies"].values()) for arm in arms}
  print(json.dumps(out, indent=2))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(out, f, indent=2)


if __name__ == "__main__":
  app.run(main)
