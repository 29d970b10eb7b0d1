"""The surgical study's wall time with the frozen-prefix cache against without it, side by
side in one run: issue 33's MNIST-C target ("the study's wall time 3x shorter, the same
numbers").

    python -m benchmarks.surgical_wall --data_dir=../shared/data [--corruption=rotate] \
        [--pretrain_seeds=1] [--out=FILE.json]

The study's own code on one MNIST-C shift (config `mnist_c`, its rows, grids and
tuning), from `--pretrain_seeds` pre-trained networks (pre-trained once, before the
clock starts, and shared by both arms). Row by row, each row is tuned and scored from
scratch in a fresh folder by each arm, the arm that goes first alternating by row:
  * cached: `cache_frozen_prefix=True` (the default): the blocks before the first one a
    row trains run once per set (training, validation and test images);
  * every step: `cache_frozen_prefix=False`: every block runs at every step and
    evaluation, as the study did before the cache.
Per row: seconds in each arm, their ratio, and both arms' picks and test accuracies (the
same up to float rounding). The study's time is the sum over its rows (plus its
pre-training, the same in both arms), so the rows that train block1 bound the speed-up:
for them there is nothing frozen to cache.
"""
import json
import os
import tempfile
import time

import numpy as np
from absl import app, flags

from benchmarks import timing
from experiments.configs import surgical as surgical_configs
from jaxtl import cache
from jaxtl.finetune import grid, lpft
from jaxtl.studies.surgical import study

_CORRUPTION = flags.DEFINE_string("corruption", "rotate", "The MNIST-C corruption.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Offline mirrors (else $JAXTL_DATA_DIR).")
_PRETRAIN_SEEDS = flags.DEFINE_integer("pretrain_seeds", 1, "Pre-trained networks.")
_PRETRAIN_STEPS = flags.DEFINE_integer("pretrain_steps", 0, "Pre-training steps (0: the "
                                      "study's); fewer only to try the benchmark out.")
_ROWS = flags.DEFINE_list("rows", [], "Rows of the study (default: all of mnist_c's).")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")

ARMS = (("cached", True), ("every_step", False))


def run_row(shift, label, overrides) -> dict:
  """{row: its tuned summary} of one strategy row, as `study_shift` computes it."""
  if dict(overrides).get("strategy") == "lp_ft":
    return lpft.lpft_rows(shift, label, overrides)
  return {label: study.grid_row(shift, label, overrides)}


def cached_blocks(shift, overrides) -> int:
  """How many leading blocks the cached arm runs once for this row's fine-tuning (0:
  nothing to cache); LP-FT's fine-tuning trains everything from its probe."""
  row = shift.config.finetune.copy_and_resolve_references()
  row.update(dict(overrides))
  if row.strategy == "lp_ft":
    row.strategy = "full"
  spec = grid.spec_from_config(row, shift.model.block_names(), study.reinit(shift.config),
                               shift.config.chunk)
  return grid.prefix_start(shift.model, next(iter(shift.sources.values()))[0], spec)


def main(argv):
  del argv
  config = surgical_configs.get_config("mnist_c")
  spec = f"input:mnist:{_CORRUPTION.value}"
  config.shifts, config.data_dir = (spec,), _DATA_DIR.value
  config.pretrain_seeds = tuple(range(_PRETRAIN_SEEDS.value))
  if _PRETRAIN_STEPS.value:
    config.pretrain.num_steps = _PRETRAIN_STEPS.value
  config.fail_on_edge = False  # a timing, not a table: an edge pick is reported, not fatal
  rows = [(l, o) for l, o in config.strategies if not _ROWS.value or l in _ROWS.value]
  out = {**timing.provenance("benchmarks.surgical_wall"), "shift": spec,
         "pretrain_seeds": list(config.pretrain_seeds),
         "pretrain_steps": config.pretrain.num_steps,
         "seeds": list(config.seeds), "lr_grid": list(config.lr_grid),
         "stamp": cache.stamp(), "rows": {}}
  with tempfile.TemporaryDirectory() as root:
    config.pretrain_root = os.path.join(root, "pretrain")
    start = time.perf_counter()
    shifts = {}
    for arm, cached in ARMS:
      c = config.copy_and_resolve_references()
      c.finetune.cache_frozen_prefix = cached
      shifts[arm] = study.Shift(c, os.path.join(root, arm), spec)  # the first pre-trains
    out["pretrain_seconds"] = time.perf_counter() - start
    out["blocks"] = list(shifts["cached"].model.block_names())
    for i, (label, overrides) in enumerate(rows):
      # Which arm runs first alternates: the first to run a program compiles it (jit's
      # in-process cache), which the other arm may then reuse.
      for arm, _ in ARMS if i % 2 == 0 else ARMS[::-1]:
        start = time.perf_counter()
        result = run_row(shifts[arm], label, overrides)
        seconds = time.perf_counter() - start
        for name, row in result.items():
          study._summarize(row)  # pylint: disable=protected-access
          entry = out["rows"].setdefault(name, {})
          entry[arm] = {"test_accuracy": row["test_accuracy"],
                        "picks": [q.get("learning_rate", q.get("l2")) for q in row["picks"]],
                        "changed_blocks": row["changed_blocks"]}
        entry = out["rows"][label]
        entry[arm]["seconds"] = seconds
      entry["first"] = ARMS[i % 2][0]
      entry["cached_blocks"] = cached_blocks(shifts["cached"], overrides)
      entry["speedup"] = entry["every_step"]["seconds"] / entry["cached"]["seconds"]
      print(label, json.dumps(entry), flush=True)
  timed = [r for r in out["rows"].values() if "seconds" in r["cached"]]
  out["total"] = {arm: sum(r[arm]["seconds"] for r in timed) for arm, _ in ARMS}
  out["total"]["speedup"] = out["total"]["every_step"] / out["total"]["cached"]
  out["max_test_accuracy_difference"] = float(max(
      abs(r["cached"]["test_accuracy"] - r["every_step"]["test_accuracy"])
      for r in out["rows"].values()))
  out["same_picks"] = all(np.allclose(r["cached"]["picks"], r["every_step"]["picks"])
                          for r in out["rows"].values())
  print(json.dumps(out, indent=2))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(out, f, indent=2)


if __name__ == "__main__":
  app.run(main)
