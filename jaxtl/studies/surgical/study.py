"""Which layers to fine-tune under which shift (Lee et al. 2023), and LP-FT in and out of
distribution (Kumar et al. 2022): `study(config, workdir)`.

For every shift in `config.shifts` (specs `kind:dataset[:corruption]`, jaxtl.data.shifts):
  1. pre-train on the shift's source training set once per pre-training seed
     (`pretrain_seeds`; run folders of `jaxtl.finetune.trainer`, checkpointed, resumed);
  2. hold out `num_val` target training examples for validation (the same for every
     run) and draw each run's `num_train` labelled examples from the rest: run (p, s),
     pre-training seed p and fine-tuning seed s of `seeds`, has its own draw, head and
     batch order (seed 100 p + s);
  3. tune every strategy row on validation only: every learning rate of `lr_grid` x
     weight decay of `wd_grid`, on every run; the pick maximises the validation accuracy
     pooled over all runs; a pick on the edge of the grid widens it by a decade on that
     side (within `lr_limits`; below the lower limit, 0: no update, the end of the valid
     values, `jaxtl.finetune.tuning`) until it is inside; a pick still on an edge fails
     the study when its shift is done;
  4. train the pick again (the same weights) and score it on the test sets, on which
     the settings tried are not scored (`scored_pick`); report its target test accuracy
     per run; the tables and verdicts (`surgical_report`, `jaxtl.stats`) average over
     fine-tuning seeds within each pre-training and take the t-interval over
     pre-trainings.
The `lp_ft` row is Kumar et al.'s LP-FT (`lpft.py`): a converged linear probe (L2 from
`probe_l2_grid`, picked on validation), then everything fine-tuned from it with its own
`lpft_lr_grid`; the probe alone is the row `lp`, when asked for.
Per shift also: the relative gradient norm of each block at the start of fine-tuning
(what Auto-RGN scales by) and how far each block's weights move under `all`.

`config.ood` adds evaluation sets for the LP-FT question: each is another test set of the
same classes (`usps`, or a corruption name applied to the target test set).
Every cell (a shift, row, pre-training seed and hyperparameter setting) is saved under
`workdir/cells/` with its key (`jaxtl.cache`: config, code hash, hashes of the
pre-trained variables and data), so an interrupted study resumes at the next cell and a
cell of another key is never reused.
"""
import importlib
import os
import re

import jax
import numpy as np
from absl import logging

from jaxtl import cache, checkpoint, partition, runtime, stats
from jaxtl.errors import ConfigError
from jaxtl.finetune import grid, lpft, tuning
from jaxtl.finetune.data import split_train_val
from jaxtl.finetune.trainer import forward
from jaxtl.metrics import write_results, write_text
from jaxtl.models import build_model
from jaxtl.studies.surgical import report as surgical_report
from jaxtl.studies.surgical.tasks import (check_shift, eval_sets, parse_shift, run_seed,
                                         shift_task, target_split, worst_group)
from jaxtl.finetune.compare import check_strategies, run_cached


def pretrained(config, workdir, task, seed: int):
  """Pre-trains on the task's source with `seed` (a run folder per source, objective and
  seed, reused only if finished with the same config and code); returns (variables,
  source test accuracy, None for a self-supervised objective)."""
  root = config.pretrain_root or os.path.join(workdir, "pretrain")
  name = task.source_key + ("" if config.pretrain.objective == "supervised" else
                            f"_{config.pretrain.objective}") + f"_seed{seed}"
  folder = os.path.join(root, re.sub(r"\W", "_", name))
  pre = config.pretrain.copy_and_resolve_references()
  pre.seed = seed
  s_train, s_val = split_train_val(task.source_train, 0, pre.num_val, pre.data_seed)
  metrics = run_cached(pre, folder, (s_train, s_val, task.source_test),
                       on_mismatch=config.on_mismatch)
  return checkpoint.load_variables(folder), metrics.get("test_accuracy")


def reinit(config) -> tuple:
  """`config.reinit`, plus the head after a self-supervised objective (its head is the
  objective's output layer, not a classifier)."""
  extra = () if config.pretrain.objective == "supervised" else (r"^head/",)
  return tuple(dict.fromkeys(tuple(config.reinit) + extra))


def block_of(path: str) -> str:
  return path.split("/", 1)[0]


def block_norms(tree, blocks) -> dict:
  flat = partition.flatten(tree)
  return {b: float(np.sqrt(sum(np.sum(np.square(v)) for p, v in flat.items()
                               if block_of(p) == b))) for b in blocks}


def relative_gradient_norms(model, variables, images, labels, batch_size, batch_norm,
                            num_batches: int = 5) -> dict:
  """Per block ||grad|| / ||w|| at the start of fine-tuning, averaged over the first
  `num_batches` batches (as Auto-RGN's measurement in the paper's code)."""
  import optax  # pylint: disable=import-outside-toplevel

  def loss(params, x, y):
    logits, _ = forward(model, params, variables.get("batch_stats", {}), x,
                        batch_norm == "train")
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  grad = jax.jit(jax.grad(loss))
  blocks = model.block_names()
  w = block_norms(variables["params"], blocks)
  out = {b: 0.0 for b in blocks}
  for i in range(num_batches):
    sl = slice(i * batch_size, (i + 1) * batch_size)
    g = block_norms(grad(variables["params"], images[sl], labels[sl]), blocks)
    for b in blocks:
      out[b] += g[b] / w[b] / num_batches
  return out


class Shift:
  """What every cell of one shift shares: the task, its model, the pre-trained sources,
  the target split and evaluation sets, and the frozen-prefix features of those sets."""

  def __init__(self, config, workdir, spec):
    self.config, self.workdir, self.spec = config, workdir, spec
    self.task = shift_task(config, spec)
    c = config.finetune
    self.model = build_model(c.model, num_classes=self.task.num_classes, **dict(c.model_kwargs))
    example = self.task.target_train.images[:1]
    fresh = self.model.init(jax.random.PRNGKey(0), example, train=False)
    self.sources = {}  # pre-training seed -> (variables, source test accuracy)
    for p in config.pretrain_seeds:
      variables, acc = pretrained(config, workdir, self.task, p)
      self.sources[p] = (checkpoint.load_pretrained(fresh, variables, reinit(config))[0], acc)
    self.runs = {p: [run_seed(p, s) for s in config.seeds] for p in config.pretrain_seeds}
    self.val_index, self.train_index = target_split(
        self.task, config.num_train, config.num_val,
        [r for runs in self.runs.values() for r in runs], config.finetune.data_seed)
    self.sets = {"val": self.task.target_train.subset(self.val_index), **eval_sets(config, self.task)}
    self.inputs = {p: {"pretrained": cache.tree_hash(v), "source_test_accuracy": acc}
                   for p, (v, acc) in self.sources.items()}
    self.inputs["data"] = {"train_pool": self.task.target_train.provenance(),
                           **{k: ds.provenance() for k, ds in self.sets.items()}}
    self._features = {}

  def features(self, p, start, name):
    """Set `name` through the first `start` blocks of source p (computed once)."""
    if (p, start, name) not in self._features:
      self._features[(p, start, name)] = grid.prefix_features(
          self.model, self.sources[p][0], self.sets[name].images, start)
    return self._features[(p, start, name)]

  def head_features(self, p, name):
    if (p, "head", name) not in self._features:
      images = (self.task.target_train.images if name == "pool" else self.sets[name].images)
      self._features[(p, "head", name)] = lpft.head_inputs(self.model, self.sources[p][0],
                                                           images)
    return self._features[(p, "head", name)]

  def cell(self, label, overrides, p, name, compute, **setting):
    """`compute()` cached under workdir/cells/SHIFT/ROW/pP_NAME.json with its key."""
    c = self.config
    key = {"shift": self.spec, "row": dict(overrides), "setting": setting,
           "finetune": c.finetune.to_dict(), "pretrain": c.pretrain.to_dict(),
           "split": {k: c[k] for k in ("num_train", "num_val", "shift_seed", "reinit", "ood",
                                       "probe_l2_grid")},
           "runs": self.runs[p], "code": cache.code_hash(),
           "inputs": {"source": self.inputs[p], "data": self.inputs["data"]}}
    path = os.path.join(self.workdir, "cells", re.sub(r"\W", "_", self.spec),
                        re.sub(r"\W+", "_", label).strip("_"), f"p{p}_{name}.json")
    return cache.cached(path, key, compute, self.config.on_mismatch)

  def score(self, p, stacked, start, seeds, sets=None) -> list:
    """Per run: accuracy on validation and every evaluation set (worst group too), or on
    the sets named in `sets` only."""
    out = [{"pretrain_seed": p, "seed": s} for s in seeds]
    for name, ds in self.sets.items():
      if sets is not None and name not in sets:
        continue
      correct = grid.evaluate_grid(self.model, stacked, self.features(p, start, name),
                                   ds.labels, chunk=self.config.chunk, start=start)
      for row, c in zip(out, correct):
        row[f"{name}_accuracy"] = float(c.mean())
        if name == "test" and "nuisance" in ds.metadata:
          row["test_worst_group_accuracy"] = float(worst_group(c, ds))
    return out

  def fine_tune(self, spec, p, lr, wd, variables=None, seeds=None, sets=("val",)):
    """Fine-tune source p (or `variables`, e.g. with LP-FT's probe as head) on its runs at
    (lr, wd); score every run on `sets` (None: every set). What changed is counted
    against source p as pre-trained, wherever the fine-tuning started."""
    source = self.sources[p][0]
    variables = source if variables is None else variables
    seeds = self.runs[p] if seeds is None else seeds
    pool = self.task.target_train
    stacked = grid.flat_configs(grid.train_grid(
        self.model, variables, spec, pool.images, pool.labels, [lr], [wd], seeds,
        np.stack([self.train_index[s] for s in seeds])))
    start = grid.prefix_start(self.model, variables, spec)
    per_run = self.score(p, stacked, start, seeds, sets)
    first = grid.take(stacked, 0)
    changed = grid.changed_leaves(source, first)
    blocks = self.model.block_names()
    w0 = block_norms(variables["params"], blocks)
    for i, row in enumerate(per_run):
      moved = block_norms(jax.tree_util.tree_map(
          lambda a, b: a - b, grid.take(stacked, i)["params"], variables["params"]), blocks)
      row["weight_movement"] = {b: float(moved[b] / w0[b]) for b in blocks}
    return {"per_seed": per_run,
            "changed_params": grid.count_values(source["params"], changed["params"]),
            "changed_stats": grid.count_values(source.get("batch_stats", {}),
                                               changed["batch_stats"]),
            "changed_blocks": sorted({block_of(q) for q in changed["params"] +
                                      changed["batch_stats"]})}

  def scored_pick(self, label, overrides, p, name, tuned, compute, **setting) -> dict:
    """The pick's cell scored on every evaluation set: `compute()` trains the picked
    setting again (the same program and seeds, so the same weights) and scores it
    everywhere; the tuning cells score validation only, since scoring every setting tried
    on the test sets cost more than training it (MNIST-C: 4.1 s for 10,000 test images
    against 3.7 s for 100 steps of `all`). A re-run whose validation accuracy differs from
    the tuned cell's (another machine's rounding) is logged, and the tuned value kept."""
    cell = self.cell(label, overrides, p, f"{name}_scored", compute, scored=True, **setting)
    for run, old in zip(cell["per_seed"], tuned["per_seed"]):
      if run["val_accuracy"] != old["val_accuracy"]:
        logging.warning("%s / %s / pre-training %d %s: the re-run's validation accuracy %.4f "
                        "differs from the tuned cell's %.4f; reporting the tuned one.",
                        self.spec, label, p, name, run["val_accuracy"], old["val_accuracy"])
        run["val_accuracy"] = old["val_accuracy"]
    return cell


def grid_row(shift, label, overrides) -> dict:
  """A strategy row: (lr, wd) tuned per pre-training on its own runs' validation
  accuracy (so the interval over pre-trainings includes the selection's noise); the
  pick's runs scored."""
  config = shift.config
  row_config = config.finetune.copy_and_resolve_references()
  row_config.update(dict(overrides))
  spec = grid.spec_from_config(row_config, shift.model.block_names(), reinit(config),
                               config.chunk)
  picks, per_seed, picked = [], [], []
  for p in config.pretrain_seeds:
    cells, best_wd = {}, {}

    def at_lr(lr, p=p, cells=cells, best_wd=best_wd):  # the best weight decay at this lr
      for wd in config.wd_grid:
        cells[(lr, wd)] = shift.cell(label, overrides, p, f"lr{lr:g}_wd{wd:g}",
                                     lambda lr=lr, wd=wd: shift.fine_tune(spec, p, lr, wd),
                                     lr=lr, wd=wd)
      score = {wd: tuning.pooled_val([cells[(lr, wd)]]) for wd in config.wd_grid}
      best_wd[lr] = max(config.wd_grid, key=score.get)
      return score[best_wd[lr]]

    lr, _, scores, edge = tuning.tune(config.lr_grid, config.lr_limits, at_lr,
                               f"{shift.spec} / {label} / pre-training {p} learning rate",
                               config.lr_refine)
    wd = best_wd[lr]
    picks.append(tuning.pick_record(p, lr, wd, scores, edge))
    cell = shift.scored_pick(label, overrides, p, f"lr{lr:g}_wd{wd:g}", cells[(lr, wd)],
                             lambda lr=lr, wd=wd, p=p: shift.fine_tune(spec, p, lr, wd,
                                                                       sets=None),
                             lr=lr, wd=wd)
    per_seed += cell["per_seed"]
    picked.append(cell)
  return dict(tuning.row_summary(picks), per_seed=per_seed, **tuning.changes(picked))


def _summarize(row: dict) -> dict:
  """Means and hierarchical 95% intervals (`jaxtl.stats`) of every accuracy of a row."""
  per_seed = row["per_seed"]
  pretrain = sorted({r["pretrain_seed"] for r in per_seed})
  for key in per_seed[0]:
    if key.endswith("_accuracy"):
      values = [[r[key] for r in per_seed if r["pretrain_seed"] == p] for p in pretrain]
      e = stats.estimate(np.asarray(values))
      row[key], row[key + "_ci95"] = e.mean, e.ci95
  return row


def study_shift(config, workdir, spec):
  shift = Shift(config, workdir, spec)
  rows = {}
  for label, overrides in config.strategies:
    if dict(overrides).get("strategy") == "lp_ft":
      rows.update(lpft.lpft_rows(shift, label, overrides))
    else:
      rows[label] = grid_row(shift, label, overrides)
  for label, row in rows.items():
    _summarize(row)
    logging.info("%s / %s: test %.4f +- %.4f (lr %s)", spec, label, row["test_accuracy"],
                 row["test_accuracy_ci95"], row.get("learning_rate", row.get("l2")))
  if "all" in rows:  # how far each block moved under `all`, mean over runs
    moves = [r["weight_movement"] for r in rows["all"]["per_seed"]]
    rows["all"]["weight_movement"] = {b: float(np.mean([m[b] for m in moves])) for b in moves[0]}
  for row in rows.values():
    for r in row["per_seed"]:
      r.pop("weight_movement", None)
  rgn, zero_shot = [], []
  for p, (variables, _) in shift.sources.items():
    train0 = shift.task.target_train.subset(shift.train_index[shift.runs[p][0]])
    rgn_vars = grid.redraw(shift.model, variables, reinit(config),
                           jax.random.split(jax.random.PRNGKey(shift.runs[p][0]))[0],
                           train0.images[:1])
    rgn.append(relative_gradient_norms(shift.model, rgn_vars, train0.images, train0.labels,
                                       config.finetune.batch_size, config.finetune.batch_norm))
    before = jax.tree_util.tree_map(lambda a: a[None], variables)
    zero_shot.append(float(grid.evaluate_grid(shift.model, before, shift.task.target_test.images,
                                              shift.task.target_test.labels)[0].mean()))
  source = [acc for _, acc in shift.sources.values()]
  return {"source_test_accuracy": None if None in source else float(np.mean(source)),
          "source_test_accuracy_per_pretraining": source,
          "num_classes": shift.task.num_classes,
          "no_finetuning_test_accuracy": float(np.mean(zero_shot)),
          "pretrain_seeds": list(config.pretrain_seeds), "seeds": list(config.seeds),
          "target_data": shift.inputs["data"],
          "relative_gradient_norm": {b: float(np.mean([g[b] for g in rgn])) for b in rgn[0]},
          "strategies": rows}


def edge_picks(results) -> list:
  """'shift / row / pre-training p (lr or L2)' of every pick on the edge of its grid."""
  out = []
  for spec, r in results.items():
    for label, row in r["strategies"].items():
      for q in row.get("picks", []):
        if q["on_edge"]:
          value = f"L2 {q['l2']:g}" if "learning_rate" not in q else f"lr {q['learning_rate']:g}"
          out.append(f"{spec} / {label} / pre-training {q['pretrain_seed']} ({value})")
  return out


def study(config, workdir: str) -> dict:
  """The study of the module docstring; writes results.json, results.md and a plot."""
  for module in config.imports:  # user code that registers corruptions, datasets, models
    try:
      importlib.import_module(module)
    except ImportError as e:
      raise ConfigError(f"imports: cannot import {module!r} ({e}).") from e
  for spec in config.shifts:
    check_shift(spec)
  check_strategies(config.finetune, config.strategies)
  model = build_model(config.finetune.model, num_classes=2, **dict(config.finetune.model_kwargs))
  for label, overrides in config.strategies:
    row = config.finetune.copy_and_resolve_references()
    row.update(dict(overrides))
    if row.strategy != "lp_ft":
      try:
        grid.spec_from_config(row, model.block_names())
      except ConfigError as e:
        raise ConfigError(f"strategies row {label!r}: {e}") from e
  labels = [label for label, _ in config.strategies]
  for spec in config.shifts:  # the verdict's row must be run: checked before any run
    kind = parse_shift(spec)[0]
    if kind in surgical_report.EXPECTED:
      expected = surgical_report.expected_blocks(kind, model.block_names())
      if set(expected) - set(labels):
        raise ConfigError(f"The verdict on {spec!r} needs the rows {expected} (Lee et al.'s "
                          f"blocks for {kind} shifts); rows: {labels}.")
  os.makedirs(workdir, exist_ok=True)
  results = {}
  for spec in config.shifts:  # an edge fails the study at once, not after every shift
    results[spec] = study_shift(config, workdir, spec)
    edges = edge_picks({spec: results[spec]})
    if edges and config.fail_on_edge:
      raise ConfigError(f"Picks on the edge of their grid (widen lr_grid / lr_limits / "
                        f"probe_l2_grid): {', '.join(edges)}.")
  table = surgical_report.format_tables(results)
  write_text(os.path.join(workdir, "results.md"), table + "\n")
  write_results(workdir, config, results, "surgical_study")
  if runtime.is_writer():
    surgical_report.plot(results, os.path.join(workdir, "results.png"))
  print(table)
  return results
