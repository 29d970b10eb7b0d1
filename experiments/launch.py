"""The one `main` of every experiment: flags `--config` (an ml_collections config file,
`path[:VARIANT]`, locked) and `--workdir`, then one library call `fn(config, workdir)`."""
from typing import Callable

from absl import app, flags
from ml_collections import config_flags

from jaxtl.runtime import enable_compilation_cache, log_versions, quiet_libraries

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:VARIANT]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder; rerunning a command resumes there.")
flags.mark_flags_as_required(["config", "workdir"])


def run(fn: Callable[..., object], print_result: bool = False):
  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    quiet_libraries()
    enable_compilation_cache()
    log_versions()
    result = fn(_CONFIG.value, _WORKDIR.value)
    if print_result:
      print(result)

  app.run(main)
