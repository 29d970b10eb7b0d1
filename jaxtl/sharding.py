"""Data parallelism over many devices and hosts with `jax.sharding`.

One mesh axis, `"batch"`. Parameters, optimizer state and the (small) datasets are
replicated on every device; the examples of a batch, or the tasks of a meta-batch, are
drawn inside the jitted step from the replicated data and then split over the mesh by
a sharding constraint. XLA (GSPMD) partitions the computation: each device works on
its share of the batch, and the mean over the batch (the loss, batch-norm statistics)
becomes an all-reduce, so the result equals the single-device one to floating-point
tolerance. The same code runs on one CPU, 8 GPUs or a TPU slice; across hosts, call
`initialize_distributed` first (the launchers' `--coordinator_address`,
`--num_processes` and `--process_id` flags): every process then draws the same global
batch from the same key and computes its own devices' share of it.
"""
import os

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxtl.errors import ConfigError

BATCH = "batch"


def split_cpu(devices: int):
  """Presents the CPU as `devices` JAX devices (XLA's
  `--xla_force_host_platform_device_count`), so that a run over all devices
  (`num_devices=0`) splits each batch over the cores and runs the shards in parallel:
  meta-training's many small tasks keep two cores busier this way than with XLA's
  threading inside each operation (docs/benchmarks.md). Must run before JAX starts its
  backend; 0 or 1 leaves JAX's default (one CPU device)."""
  if devices < 0:
    raise ConfigError(f"cpu_devices={devices}; valid: 0 (JAX's default) or more.")
  if devices <= 1:
    return
  os.environ["XLA_FLAGS"] = " ".join(
      [f for f in os.environ.get("XLA_FLAGS", "").split()
       if not f.startswith("--xla_force_host_platform_device_count")]
      + [f"--xla_force_host_platform_device_count={devices}"])


def check_cpu_split(devices: int):
  """After `split_cpu(devices)` and once JAX may start: on CPU, it has that many devices."""
  if devices > 1 and jax.default_backend() == "cpu" and jax.local_device_count() != devices:
    raise ConfigError(f"cpu_devices={devices}: JAX had started with "
                      f"{jax.local_device_count()} CPU device(s) before it was set; set "
                      f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} before "
                      "the process starts.")


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int):
  """`jax.distributed.initialize` for multi-host runs; a no-op without a coordinator."""
  if not coordinator_address:
    return
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  logging.info("Process %d of %d; %d local of %d devices.", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def make_mesh(num_devices: int = 0, batch: int | None = None, what: str = "batch_size") -> Mesh:
  """A 1-D mesh over the first `num_devices` devices (0: all, on every host). With
  `batch`, the mesh splits that many examples or tasks (`what`, the config field that
  set it, named in the error when the devices do not divide it)."""
  devices = jax.devices()
  if num_devices < 0 or num_devices > len(devices):
    raise ConfigError(f"num_devices={num_devices}; valid: 0 (all) to {len(devices)} "
                      f"({len(devices)} {devices[0].platform} devices here).")
  mesh = Mesh(np.array(devices[:num_devices or len(devices)]), (BATCH,))
  size = mesh.devices.size
  if batch is not None and batch % size:
    raise ConfigError(f"{what}={batch} is not divisible by the {size} devices of the mesh; "
                      f"use a multiple of {size} or set num_devices.")
  return mesh


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def replicate(tree, mesh: Mesh):
  """Places host or device arrays on every device of `mesh` (also across hosts); None
  leaves (no data) stay None. In one process a device-to-device `device_put`; across
  hosts each process builds its local copies from its own (identical) values."""
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree_util.tree_map(put, tree)


def shard_batch(tree, mesh: Mesh):
  """Inside jit: split the leading (batch or task) axis of every leaf over the mesh."""
  if mesh.devices.size == 1:
    return tree
  sharding = NamedSharding(mesh, PartitionSpec(BATCH))
  return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)
