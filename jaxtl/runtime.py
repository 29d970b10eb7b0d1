"""Start-up helpers for experiment scripts: versions, devices, multi-host initialisation."""
import platform

from absl import logging


def log_versions():
  import flax, jax, optax  # pylint: disable=g-import-not-at-top,multiple-imports
  logging.info("python %s, jax %s, flax %s, optax %s, backend %s, devices %s",
               platform.python_version(), jax.__version__, flax.__version__, optax.__version__,
               jax.default_backend(), jax.devices())


class _DropLibraryInfo:
  """Hides INFO lines from chatty libraries (orbax logs every file it writes)."""

  def filter(self, record):
    import logging as std_logging  # pylint: disable=g-import-not-at-top
    return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def quiet_libraries():
  logging.get_absl_handler().addFilter(_DropLibraryInfo())
