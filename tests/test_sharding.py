"""Data parallelism over a device mesh gives the single-device result.

Runs in a subprocess with 4 virtual CPU devices (`--xla_force_host_platform_device_count`
must be set before JAX starts, and this pytest process has started it already).
"""
import os
import subprocess
import sys
import textwrap

import pytest

from jaxtl import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

META_CHECK = """
import jax, jax.numpy as jnp, numpy as np
from experiments.configs import meta
from jaxtl import sharding
from jaxtl.meta import tasks, train
assert jax.device_count() == 4, jax.devices()
config = meta.get_config("quick")
# SGD, not Adam: conv biases before batch norm have a zero true gradient, which Adam
# would turn into full-size steps in the direction of rounding noise.
config.meta_batch, config.meta_optimizer, config.meta_lr = 8, "sgd", 0.1
learner = train.make_learner(config)
data = jax.random.uniform(jax.random.PRNGKey(0), (30, 20, 28, 28, 1))
sampler = lambda key, d, b: tasks.sample_classification(key, d, b, config.way, config.shot,
                                                        config.query)
tx = train.make_outer_optimizer(config)
results = {}
for devices in (1, 4):
  mesh = sharding.make_mesh(devices)
  state = train.init_state(config, learner, tx, data, sampler)
  state, d = sharding.replicate((state, data), mesh)
  step = train.make_meta_step(learner, tx, sampler, config.meta_batch, 3, mesh)
  if devices == 4:  # the tasks really are split: the meta-gradient needs an all-reduce
    assert "all-reduce" in step.lower(state, d, jax.random.PRNGKey(1)).compile().as_text()
  state, (losses, _) = step(state, d, jax.random.PRNGKey(1))
  assert len(state["meta_params"]["params"]["block1"]["conv"]["kernel"].sharding.device_set) \\
      == devices
  results[devices] = jax.tree_util.tree_map(np.asarray, (state["meta_params"], losses))
close = jax.tree_util.tree_map(lambda a, b: np.allclose(a, b, rtol=1e-4, atol=1e-6),
                               results[1], results[4])
assert all(jax.tree_util.tree_leaves(close)), close
# Evaluation splits each chunk's tasks over the mesh, to the same per-task numbers.
config.eval_batch, config.eval_tasks = 8, 16
metrics = {}
for devices in (1, 4):
  mesh = sharding.make_mesh(devices)
  metrics[devices] = train.evaluate(config, learner, *sharding.replicate(
      (state["meta_params"], state["batch_stats"], data), mesh), sampler, mesh)
for s in metrics[1]["test_accuracy_by_steps"]:
  assert abs(metrics[1]["test_accuracy_by_steps"][s] - metrics[4]["test_accuracy_by_steps"][s]) \
      < 1e-6, metrics
try:
  sharding.check_divisible(6, sharding.make_mesh(4), "meta_batch")
  raise AssertionError("no error")
except ValueError as e:
  assert "meta_batch=6 is not divisible by the 4 devices" in str(e), e
print("meta ok")
"""

FINETUNE_CHECK = """
import json, os, sys, jax, numpy as np
from experiments.configs import finetune
from jaxtl import checkpoint
from jaxtl.finetune import trainer
out = sys.argv[1]
params = {}
for devices in (1, 4):
  config = finetune.get_config("quick_source")
  config.num_devices, config.batch_size = devices, 32
  workdir = os.path.join(out, str(devices))
  trainer.train_and_evaluate(config, workdir)
  params[devices] = checkpoint.load_variables(workdir)
close = jax.tree_util.tree_map(lambda a, b: np.allclose(a, b, rtol=1e-4, atol=1e-5),
                               params[1], params[4])
assert all(jax.tree_util.tree_leaves(close)), close
print("finetune ok")
"""


def run_with_devices(code: str, *args: str) -> str:
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAXTL_COMPILATION_CACHE="", PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def test_sharded_meta_step_equals_single_device():
  assert "meta ok" in run_with_devices(META_CHECK)


def test_sharded_finetuning_equals_single_device(tmp_path):
  assert "finetune ok" in run_with_devices(FINETUNE_CHECK, str(tmp_path))


def test_mesh_errors_name_the_valid_values():
  with pytest.raises(ValueError, match=r"num_devices=5; valid: 0 \(all\) to 1"):
    sharding.make_mesh(5)
