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
from tests import reference
assert jax.device_count() == 4, jax.devices()
config = meta.get_config("quick")
# SGD, not Adam: conv biases before batch norm have a zero true gradient, which Adam
# would turn into full-size steps in the direction of rounding noise.
config.meta_batch, config.meta_optimizer, config.meta_lr = 8, "sgd", 0.1
# A moderate inner step: at alpha 2.0 on random images the second-order term amplifies
# float32 rounding to 0.5% of the update (measured), a test of conditioning, not sharding;
# at 0.4 float32 is within 2e-6 of float64.
config.inner_lr = 0.4
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
# Both against the same steps in float64 on one device (tests/reference.py): the updates
# (parameters minus their initial values) and the losses.
start = train.init_state(config, learner, tx, data, sampler)  # initialisers differ in x64
initial = jax.tree_util.tree_map(np.asarray, start["meta_params"])
with reference.float64():
  step = train.make_meta_step(learner, tx, sampler, config.meta_batch, 3)
  end, (losses, _) = step(reference.to_float64(start), reference.to_float64(data),
                          jax.random.PRNGKey(1))
  expected = jax.tree_util.tree_map(np.asarray, (end["meta_params"], losses))
assert expected[1].dtype == np.float64
update = lambda r: (jax.tree_util.tree_map(np.subtract, r[0], initial), r[1])
for devices in (1, 4):
  reference.assert_close(update(results[devices]), update(expected), what=f"{devices} devices")
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
  sharding.make_mesh(4, 6, "meta_batch")
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
from tests import reference
out = sys.argv[1]
params = {}
for devices in (1, 4):
  config = finetune.get_config("quick_source")
  config.num_devices, config.batch_size = devices, 32
  # SGD: Adam divides by the gradients' own size, so rounding noise in a near-zero
  # gradient becomes a full-size step, and runs on 1 and 4 devices drift apart.
  config.optimizer, config.learning_rate, config.num_steps = "sgd", 0.05, 30
  workdir = os.path.join(out, str(devices))
  trainer.train_and_evaluate(config, workdir)
  params[devices] = checkpoint.load_variables(workdir)
# The same computation but for the order of the batch's sum (split over 4 devices): equal
# up to float32 rounding, at the scale of tests/reference.py.
error = reference.relative_error(params[4], params[1])
assert error <= reference.F32_RTOL, error
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
