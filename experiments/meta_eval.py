"""Evaluate a meta-trained checkpoint: `python -m experiments.meta_eval
--config=experiments/configs/meta.py:VARIANT --workdir=DIR [--outdir=OUT]`; with
`--ensemble=DIR2,DIR3 --outdir=OUT`, the ensemble of DIR and those runs
(`jaxtl.meta.ensemble`: each query's class probabilities averaged over the runs), and with
`--config.test_affine.views=N` (and its warp's ranges) over N copies of each task."""

from absl import flags

from experiments import launch
from jaxtl.errors import ConfigError
from jaxtl.meta.ensemble import evaluate_ensemble
from jaxtl.meta.train import evaluate_checkpoint

_OUTDIR = flags.DEFINE_string("outdir", "", "Where to write results.json (default: workdir).")
_ENSEMBLE = flags.DEFINE_list("ensemble", [], "More runs: score the ensemble of --workdir and "
                              "these (needs --outdir, so no run's own results are replaced).")


def main(config, workdir):
  if not _ENSEMBLE.value and config.test_affine.views == 1:
    return evaluate_checkpoint(config, workdir, _OUTDIR.value)
  if not _OUTDIR.value:
    raise ConfigError("--ensemble and test_affine.views > 1 need --outdir: the results.json "
                      f"of an ensemble must not replace {workdir}'s own.")
  return evaluate_ensemble(config, [workdir] + _ENSEMBLE.value, _OUTDIR.value)


if __name__ == "__main__":
  launch.run(main, written_to=lambda workdir: _OUTDIR.value or workdir)
