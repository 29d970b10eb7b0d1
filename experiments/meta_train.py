"""`python -m experiments.meta_train --config=experiments/configs/meta.py:VARIANT --workdir=DIR`.

See experiments/configs/meta.py for the variants and fields.
"""
from absl import app, flags
from ml_collections import config_flags

from jaxtl.meta.train import train_and_evaluate
from jaxtl.runtime import log_versions, quiet_libraries

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path:VARIANT).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (a rerun resumes there).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  quiet_libraries()
  log_versions()
  print(train_and_evaluate(_CONFIG.value, _WORKDIR.value))


if __name__ == "__main__":
  app.run(main)
