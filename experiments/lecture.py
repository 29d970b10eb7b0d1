"""Transfer vs multi-task vs meta-learning on sinusoids, one table:
`python -m experiments.lecture --config=experiments/configs/lecture.py --workdir=DIR`.
"""
from absl import app, flags
from ml_collections import config_flags

from jaxtl.meta.lecture import run
from jaxtl.runtime import log_versions, quiet_libraries

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:VARIANT]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder; a rerun resumes there.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  quiet_libraries()
  log_versions()
  run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
