"""Evaluate a meta-trained checkpoint: `python -m experiments.meta_eval
--config=experiments/configs/meta.py:VARIANT --workdir=DIR [--outdir=OUT]`."""

from absl import flags

from experiments import launch
from jaxtl.meta.train import evaluate_checkpoint

_OUTDIR = flags.DEFINE_string("outdir", "", "Where to write results.json (default: workdir).")

if __name__ == "__main__":
  launch.run(lambda config, workdir: evaluate_checkpoint(config, workdir, _OUTDIR.value))
