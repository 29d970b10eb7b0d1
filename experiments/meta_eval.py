"""`python -m experiments.meta_eval --config=experiments/configs/meta.py:VARIANT --workdir=DIR`.

See experiments/configs/meta.py for the variants and fields.
"""
from absl import app, flags
from ml_collections import config_flags

from jaxtl.meta.train import evaluate_checkpoint
from jaxtl.runtime import log_versions, quiet_libraries

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path:VARIANT).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder holding variables/ (the checkpoint).")
_OUTDIR = flags.DEFINE_string("outdir", "", "Where to write results.json (default: workdir).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  quiet_libraries()
  log_versions()
  print(evaluate_checkpoint(_CONFIG.value, _WORKDIR.value, _OUTDIR.value))


if __name__ == "__main__":
  app.run(main)
