"""The Quick start's table under other seeds: every cell finite, MAML below pre-training.

    python -m benchmarks.lecture_seeds [--seeds=1,2,3] [--variant=default]
        [--workdir=runs/lecture_seeds] [--out=results/benchmarks/lecture_seeds.json]

Seed s sets the model initialisation and the meta-training tasks (`maml.seed`), the test
tasks (`maml.eval_seed`) and the validation tasks that pick the fine-tuning step size
(`val_seed` = 1000 + s). Each seed's runs live in `WORKDIR/seed_S` and are reused when
finished with the same config, so an interrupted sweep resumes. Exits non-zero, naming
the cell, if a cell is not finite or MAML is not below pre-training at some step count.
"""
import json
import os
import platform
import sys

import numpy as np
from absl import app, flags

from experiments.configs import lecture as lecture_configs
from jaxtl import workdir as run_dir
from jaxtl.studies import lecture

_SEEDS = flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds, each a whole table.")
_VARIANT = flags.DEFINE_string("variant", "default", "experiments/configs/lecture.py variant.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/lecture_seeds", "Folder of the runs.")
_OUT = flags.DEFINE_string("out", "", "Where the JSON summary goes (optional).")


def cpu_name() -> str:
  with open("/proc/cpuinfo") as f:
    names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
  return f"{names[0]}, {len(names)} cores" if names else platform.machine()


def table_for_seed(variant: str, seed: int, workdir: str) -> dict:
  config = lecture_configs.get_config(variant)
  config.maml.seed, config.maml.eval_seed, config.val_seed = seed, seed, 1000 + seed
  folder = os.path.join(workdir, f"seed_{seed}")
  return run_dir.finished_results(config, folder) or lecture.run(config, folder)


def problems(results: dict) -> list:
  """Cells that are not finite, and step counts where MAML is not below pre-training."""
  found = []
  for method, r in results.items():
    for k, v in r["test_mse_by_steps"].items():
      if not np.isfinite(v):
        found.append(f"{method} after {k} steps: {v}")
  for k, v in results["maml"]["test_mse_by_steps"].items():
    if k != "0" and not v < results["pretrain"]["test_mse_by_steps"][k]:
      found.append(f"MAML {v:.3f} >= pre-training {results['pretrain']['test_mse_by_steps'][k]:.3f} "
                   f"after {k} steps")
  return found


def main(argv):
  del argv
  summary, failures = {}, []
  for seed in map(int, _SEEDS.value):
    results = table_for_seed(_VARIANT.value, seed, _WORKDIR.value)
    found = problems(results)
    failures += [f"seed {seed}: {p}" for p in found]
    summary[str(seed)] = {m: {"test_mse_by_steps": r["test_mse_by_steps"],
                              "test_mse_ci95_by_steps": r["test_mse_ci95_by_steps"],
                              "finetune_lr": r.get("finetune_lr")}
                          for m, r in results.items()}
    summary[str(seed)]["problems"] = found
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump({"variant": _VARIANT.value, "machine": cpu_name(),
                 "seeds": summary}, f, indent=2)
  print(json.dumps(summary, indent=1))
  if failures:
    sys.exit("lecture_seeds: " + "; ".join(failures))


if __name__ == "__main__":
  app.run(main)
