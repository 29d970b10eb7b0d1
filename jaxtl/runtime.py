"""Start-up helpers for experiment scripts: versions, devices, multi-host initialisation."""
import platform

from absl import logging


def is_writer() -> bool:
  """Whether this process writes a run's files (config, metrics, TensorBoard, times,
  results). In a multi-process run (`jaxtl.sharding.initialize_distributed`) all
  processes compute the same numbers, so process 0 alone writes them: the others would
  race it for the same paths. Orbax checkpoints are the exception: every process calls
  them and orbax coordinates the writes."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index() == 0


def log_versions():
  import flax, jax, optax  # pylint: disable=g-import-not-at-top,multiple-imports
  logging.info("python %s, jax %s, flax %s, optax %s, backend %s, devices %s",
               platform.python_version(), jax.__version__, flax.__version__, optax.__version__,
               jax.default_backend(), jax.devices())


class _DropLibraryNoise:
  """Hides lines that say nothing to a user: orbax's INFO on every file it writes, JAX
  probing for a TPU on a machine without one, and TFDS reading a mirror folder that has
  no dataset_info.json (jaxtl's data mirrors have none, by design)."""

  def filter(self, record):
    import logging as std_logging  # pylint: disable=g-import-not-at-top
    message = str(record.msg)
    if record.levelno < std_logging.WARNING and "/orbax/" in record.pathname:
      return False
    if "Unable to initialize backend" in message:
      return False
    return not ("tensorflow_datasets" in record.pathname and "dataset_info.json" in message)


def quiet_libraries():
  import logging as std_logging  # pylint: disable=g-import-not-at-top
  noise = _DropLibraryNoise()
  logging.get_absl_handler().addFilter(noise)
  for name in ("jax._src.xla_bridge", "jax"):
    std_logging.getLogger(name).addFilter(noise)


def enable_compilation_cache():
  """Persistent XLA compilation cache, so that sweeps and reruns skip recompiling identical
  steps (a strategy sweep on CPU runs about 3x faster). Directory: $JAXTL_COMPILATION_CACHE
  (set it empty to disable), else ~/.cache/jaxtl/xla."""
  import os  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  path = os.environ.get("JAXTL_COMPILATION_CACHE",
                        os.path.join(os.path.expanduser("~"), ".cache", "jaxtl", "xla"))
  if not path:
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  logging.info("XLA compilation cache: %s", path)
  return path
