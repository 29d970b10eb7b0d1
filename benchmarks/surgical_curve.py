"""Has fine-tuning converged? A strategy's validation (and test) accuracy against the
number of fine-tuning steps, at the learning rate its study picked for each
pre-training, on every run:

    python -m benchmarks.surgical_curve --results=results/surgical/natural/results.json \
        --row=all --steps=25,50,100,200,400 --out=results/surgical/natural/curve.json

The pre-trained sources are the study's own run folders (`pretrain_root` of its config),
read as they are; the runs (data draws, heads, orders) are the study's.
"""
import json
import os
import re

import jax
import ml_collections
import numpy as np
from absl import app, flags

from jaxtl import cache, checkpoint, stats
from jaxtl.finetune import grid
from jaxtl.studies.surgical import study as surgical, tasks
from jaxtl.models import build_model

_RESULTS = flags.DEFINE_string("results", None, "A surgical study's results.json.")
_ROW = flags.DEFINE_string("row", "all", "The strategy row whose pick is followed.")
_SHIFT = flags.DEFINE_string("shift", "", "Shift spec (default: the study's first).")
_STEPS = flags.DEFINE_list("steps", ["25", "50", "100", "200", "400"], "Step counts.")
_OUT = flags.DEFINE_string("out", None, "Where the curve's JSON goes.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Data mirrors (default: the study's).")
flags.mark_flags_as_required(["results", "out"])


def curve(config, spec: str, label: str, row: dict, steps) -> dict:
  task = tasks.shift_task(config, spec)
  model = build_model(config.finetune.model, num_classes=task.num_classes,
                      **dict(config.finetune.model_kwargs))
  fresh = model.init(jax.random.PRNGKey(0), task.target_train.images[:1], train=False)
  runs = {p: [tasks.run_seed(p, s) for s in config.seeds] for p in config.pretrain_seeds}
  val_index, train_index = tasks.target_split(
      task, config.num_train, config.num_val, [r for v in runs.values() for r in v],
      config.finetune.data_seed)
  sets = {"val": task.target_train.subset(val_index), "test": task.target_test}
  overrides = dict(dict(config.strategies)[label])
  picks = {q["pretrain_seed"]: (q["learning_rate"], q["weight_decay"])
           for q in row.get("picks", [])}  # each pre-training's own pick
  out = {"shift": spec, "row": label, "learning_rate": row["learning_rate"],
         "picks": {str(p): v for p, v in picks.items()}, "steps": {}, "sources": {}}
  for p in config.pretrain_seeds:
    lr, wd = picks.get(p, (row["learning_rate"], row["weight_decay"]))
    folder = os.path.join(config.pretrain_root, re.sub(r"\W", "_", f"{task.source_key}_seed{p}"))
    variables, _ = checkpoint.load_pretrained(fresh, checkpoint.load_variables(folder),
                                              surgical.reinit(config))
    out["sources"][p] = cache.tree_hash(variables)
    for n in steps:
      row_config = config.finetune.copy_and_resolve_references()
      row_config.update(dict(overrides, num_steps=n))
      spec_n = grid.spec_from_config(row_config, model.block_names(), surgical.reinit(config))
      stacked = grid.flat_configs(grid.train_grid(
          model, variables, spec_n, task.target_train.images, task.target_train.labels,
          [lr], [wd], runs[p],
          np.stack([train_index[r] for r in runs[p]])))
      cell = out["steps"].setdefault(str(n), {"val": [], "test": []})
      for name, ds in sets.items():
        acc = grid.evaluate_grid(model, stacked, ds.images, ds.labels).mean(1)
        cell[name].append([float(a) for a in acc])
  for cell in out["steps"].values():
    for name in ("val", "test"):
      e = stats.estimate(np.asarray(cell[name]))
      cell[f"{name}_mean"], cell[f"{name}_ci95"] = e.mean, e.ci95
  return out


def main(argv):
  del argv
  with open(_RESULTS.value) as f:
    saved = json.load(f)
  tuples = lambda t: ({k: tuples(v) for k, v in t.items()} if isinstance(t, dict) else
                      tuple(tuples(v) for v in t) if isinstance(t, list) else t)
  config = ml_collections.ConfigDict(tuples(saved["config"]))  # JSON lists as tuples
  if _DATA_DIR.value:
    config.data_dir = _DATA_DIR.value
  spec = _SHIFT.value or next(iter(saved["metrics"]))
  row = saved["metrics"][spec]["strategies"][_ROW.value]
  result = curve(config, spec, _ROW.value, row, [int(s) for s in _STEPS.value])
  result.update(study=_RESULTS.value, stamp=cache.stamp())
  os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
  with open(_OUT.value, "w") as f:
    json.dump(result, f, indent=1)
  for n, cell in result["steps"].items():
    print(f"{n:>5} steps: val {100 * cell['val_mean']:.2f} ± {100 * cell['val_ci95']:.2f}, "
          f"test {100 * cell['test_mean']:.2f} ± {100 * cell['test_ci95']:.2f}")


if __name__ == "__main__":
  app.run(main)
