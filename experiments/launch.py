"""The one `main` of every experiment: flags `--config` (an ml_collections config file,
`path[:VARIANT]`, locked) and `--workdir`, then one library call `fn(config, workdir)`.

Multi-host runs (see `jaxtl.sharding`) start the same command on every host with
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I`."""
import sys
from typing import Callable

from absl import app, flags
from ml_collections import config_flags

from jaxtl.errors import ConfigError
from jaxtl.runtime import enable_compilation_cache, log_versions, quiet_libraries
from jaxtl.sharding import initialize_distributed

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:VARIANT]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder; rerunning a command resumes there.")
flags.mark_flags_as_required(["config", "workdir"])
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "Multi-host: HOST:PORT of "
                                   "process 0, given to jax.distributed.initialize.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "Multi-host: this process's index.")


def run(fn: Callable[..., object], print_result: bool = False):
  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    quiet_libraries()
    initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    enable_compilation_cache()
    log_versions()
    try:
      result = fn(_CONFIG.value, _WORKDIR.value)
    except ConfigError as e:  # the user's mistake: one line, no traceback; bugs keep theirs
      sys.exit(f"error: {e}")
    if print_result:
      print(result)

  app.run(main)
