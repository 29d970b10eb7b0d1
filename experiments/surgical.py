"""Surgical fine-tuning under input / feature / output shifts:
`python -m experiments.surgical --config=experiments/configs/surgical.py:digits --workdir=DIR`.
"""
from absl import app, flags
from ml_collections import config_flags

from jaxtl.finetune.surgical import sweep
from jaxtl.runtime import log_versions, quiet_libraries

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path:VARIANT).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder; a rerun resumes there.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  quiet_libraries()
  log_versions()
  sweep(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
