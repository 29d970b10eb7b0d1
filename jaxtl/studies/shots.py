"""Fine-tuning against meta-learning as the target set shrinks: accuracy against the
number of shots on the meta-learning benchmark (`experiments.shots`).

Every method is scored on the tasks `meta_eval` draws (class split, `eval_seed`, 600
tasks, mean and 95% CI) with `shot` support images and `query` query images per class:
  * transfer baselines (`jaxtl.meta.baselines`) on one classifier pre-trained on the
    meta-training characters (their rotations as classes, as meta-training sees them;
    the same network as MAML's), by the fine-tuning trainer. Each baseline picks its
    step size from `lr_grid` and its number of steps (0..`steps`) on `val_tasks` tasks of
    validation characters (`tasks.num_val_classes`, taken out of the training ones),
    never on the test split; LP-FT probes with the linear probe's picks, then picks its
    own. Baseline++ (`cosine`) has its own network, pre-trained with a cosine head.
    `init_from` replaces the linear-head network by a finished pre-training run of any
    objective (`jaxtl.objectives`; one workdir per network: cells are cached by name).
  * the meta-learned checkpoints of `checkpoints`, re-evaluated at each shot count with
    their own test-time procedure.
Each cell is a JSON file under `workdir/cells/`, written when done: a rerun resumes.
"""
import os

import numpy as np
from absl import logging

from jaxtl import cache, checkpoint, workdir as run_dir
from jaxtl.data import ImageDataset
from jaxtl.errors import ConfigError
from jaxtl.finetune import trainer
from jaxtl.meta import train
from jaxtl.meta.baselines import BASELINES
from jaxtl.meta.fewshot import (baseline_cell, checkpoint_cell, load_network, task_config,
                                task_model)
from jaxtl.metrics import pyplot, write_results, write_text


def cached(workdir: str, name: str, compute, key: dict) -> dict:
  """`cache.cached_cell`, logging a fresh cell's accuracy: the sweep's pulse."""
  fresh = not os.path.exists(os.path.join(workdir, "cells", f"{name}.json"))
  cell = cache.cached_cell(workdir, name, compute, key)
  if fresh:
    logging.info("%s: %.4f +- %.4f", name, cell["accuracy"], cell["ci95"])
  return cell


def pretrain(config, workdir: str, head: str):
  """(model, params, batch_stats) of the classifier pre-trained on the meta-training
  classes with a `head` (linear | cosine) head; resumes in `workdir/pretrain_<head>`."""
  data = train.make_task_data(task_config(config, max(config.ways), 1))
  images = np.asarray(data.train)  # (classes, examples, H, W, C), rotations included
  classes, per_class = images.shape[:2]
  labels = np.repeat(np.arange(classes), per_class).reshape(classes, per_class)
  held_out = per_class - 1  # each class's last example: the pre-training's own test
  split = lambda index: ImageDataset(images[:, index].reshape(-1, *images.shape[2:]),
                                     labels[:, index].reshape(-1), "omniglot-train-classes")
  train_set, test_set = split(slice(0, held_out)), split(slice(held_out, None))
  cfg = config.pretrain.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.model_kwargs.head = head
  sub = os.path.join(workdir, f"pretrain_{head}")
  if run_dir.finished_results(cfg, sub) is None:
    trainer.train_and_evaluate(cfg, sub, data=(train_set, train_set.subset(np.arange(0)),
                                               test_set))
  variables = checkpoint.load_variables(sub)
  model = task_model(cfg.model, num_classes=classes, **dict(cfg.model_kwargs))
  return model, variables["params"], variables.get("batch_stats", {}), data.provenance


# Fields that only say which cells a sweep has: not part of a cell's key.
ENUMERATING = ("ways", "shots", "baselines", "checkpoints")


def run(config, workdir: str) -> dict:
  """Every cell of the sweep (resuming from `workdir/cells/`); writes results.json."""
  unknown = sorted(set(config.baselines) - set(BASELINES))
  if unknown:
    raise ConfigError(f"Unknown baselines {unknown}; valid: {list(BASELINES)}.")
  os.makedirs(workdir, exist_ok=True)
  networks = {}  # head -> (model, params, batch_stats, provenance), pre-trained on first use

  def network(head):
    if head not in networks:
      networks[head] = (load_network(config, config.init_from)
                        if config.init_from and head == "linear" else
                        pretrain(config, workdir, head))
    return networks[head]
  base = {"config": cache.config_key(config, ENUMERATING),
          "init_from": cache.path_hash(config.init_from) if config.init_from else None}
  cells = {}  # meta-learned checkpoints first: they are the cheaper half
  for label, path in config.checkpoints:
    saved = run_dir.load_config(path)
    if saved is None:
      raise ConfigError(f"checkpoints: {path} holds no meta-learning run.")
    if saved.way not in config.ways:
      continue
    for shot in config.shots:
      key = f"{label}_{saved.way}w{shot}s"
      cells[key] = cached(workdir, key, lambda: checkpoint_cell(config, path, shot),
                          dict(base, checkpoint=cache.path_hash(path)))
  for name in config.baselines:  # method by method
    for way in config.ways:
      for shot in config.shots:
        key = f"{name}_{way}w{shot}s"
        weights = network("cosine" if name == "cosine" else "linear")[:3]
        picks = {}
        if name == "lp_ft":  # it probes with the linear probe's picks: that cell first
          probe = f"linear_probe_{way}w{shot}s"
          picks["linear_probe"] = cells.get(probe) or cached(
              workdir, probe, lambda: baseline_cell(config, "linear_probe", way, shot,
                                                    weights, {}), base)
        cells[key] = cached(
            workdir, key, lambda: baseline_cell(config, name, way, shot, weights, picks), base)
  provenance = next(iter(networks.values()))[3] if networks else None
  write_results(workdir, config, cells, "shots", data=provenance)
  write_text(os.path.join(workdir, "results.md"), format_table(cells) + "\n\n" + verdict(cells)
             + "\n")
  plot(cells, os.path.join(workdir, "results.png"))
  return cells


BASELINE_NAMES = {"ncm": "nearest class mean", "linear_probe": "linear probe (Baseline)",
                  "cosine": "cosine head (Baseline++)", "finetune": "fine-tune all",
                  "lp_ft": "LP-FT"}
ALGORITHM_NAMES = {"maml": "MAML", "protonet": "ProtoNets", "fomaml": "FOMAML", "anil": "ANIL",
                   "metasgd": "Meta-SGD", "reptile": "Reptile", "pretrain": "pre-training"}


def _parse(cells: dict) -> dict:
  """{(method, way): {shot: cell}} in the order of the cells."""
  table = {}
  for key, cell in cells.items():
    method, setting = key.rsplit("_", 1)
    way, shot = setting[:-1].split("w")
    table.setdefault((method, int(way)), {})[int(shot)] = cell
  return table


def method_name(method: str, cell: dict) -> str:
  if method in BASELINE_NAMES:
    return BASELINE_NAMES[method]
  it = ""
  if cell.get("meta_iterations"):
    it = f", {cell['meta_iterations']:,} it."
    if cell.get("num_steps"):  # a run in progress
      it = f", {cell['meta_iterations']:,} of {cell['num_steps']:,} it., in progress"
  return (f"{ALGORITHM_NAMES.get(cell['algorithm'], cell['algorithm'])} (meta-trained "
          f"{cell['trained_shot']}-shot{it})")


def _cell(cell) -> str:
  return f"{100 * cell['accuracy']:.2f} +- {100 * cell['ci95']:.2f}"


def format_table(cells: dict) -> str:
  """One table per way: methods as rows, shots as columns, test accuracy (%) +- 95% CI."""
  parsed = _parse(cells)
  parts = []
  for way in sorted({w for _, w in parsed}):
    rows = [(m, by_shot) for (m, w), by_shot in parsed.items() if w == way]
    shots = sorted({s for _, by_shot in rows for s in by_shot})
    tasks = next(iter(rows[0][1].values()))["tasks"]
    lines = [f"{way}-way, test accuracy (%) +- 95% CI over {tasks} tasks, by shots per class "
             "(one query per class)\n",
             "| method | " + " | ".join(map(str, shots)) + " |", "|---|" + "---:|" * len(shots)]
    for method, by_shot in rows:
      best = {s: max(c["accuracy"] for _, b in rows for t, c in b.items() if t == s)
              for s in shots}
      shown = [("**" + _cell(by_shot[s]) + "**" if by_shot[s]["accuracy"] == best[s]
                else _cell(by_shot[s])) if s in by_shot else "" for s in shots]
      name = method_name(method, next(iter(by_shot.values())))
      lines.append(f"| {name} | " + " | ".join(shown) + " |")
    parts.append("\n".join(lines))
  return "\n\n".join(parts)


def verdict(cells: dict) -> str:
  """Per way, where the best transfer baseline catches up with the best meta-learner."""
  parsed = _parse(cells)
  sentences = []
  for way in sorted({w for _, w in parsed}):
    best = {}
    for kind in ("transfer", "meta"):
      for (method, w), by_shot in parsed.items():
        if w != way or (method in BASELINE_NAMES) != (kind == "transfer"):
          continue
        for shot, cell in by_shot.items():
          if cell["accuracy"] > best.get((kind, shot), (None, {"accuracy": -1}))[1]["accuracy"]:
            best[(kind, shot)] = (method, cell)
    shots = sorted(s for k, s in best if k == "transfer" and ("meta", s) in best)
    if not shots:
      continue
    said = lambda kind, s: f"{method_name(*best[(kind, s)])} {_cell(best[(kind, s)][1])}"
    gap = lambda s: 100 * (best[("meta", s)][1]["accuracy"] - best[("transfer", s)][1]["accuracy"])
    overlap = lambda s: gap(s) <= 100 * (best[("meta", s)][1]["ci95"]
                                        + best[("transfer", s)][1]["ci95"])
    caught = [s for s in shots if gap(s) <= 0]
    if caught:
      s = caught[0]
      text = (f"{way}-way: transfer catches up with meta-learning at {s} shots "
              f"({said('transfer', s)} against {said('meta', s)})")
    else:
      within = [s for s in shots if overlap(s)]
      text = (f"{way}-way: transfer does not catch up with meta-learning up to {shots[-1]} "
              f"shots (at {shots[-1]}: {said('transfer', shots[-1])} against "
              f"{said('meta', shots[-1])}"
              + (f"; their 95% CIs overlap from {within[0]} shots" if within else "") + ")")
    sentences.append(text + f"; at {shots[0]} shot{'s' if shots[0] > 1 else ''} meta-learning "
                     f"leads by {gap(shots[0]):.1f} points ({said('meta', shots[0])} against "
                     f"{said('transfer', shots[0])}).")
  return "\n".join(sentences)


def plot(cells: dict, path: str) -> bool:
  """Accuracy against shots, a panel per way, a line per method with its 95% CI."""
  plt = pyplot()
  if plt is None:
    return False
  parsed = _parse(cells)
  ways = sorted({w for _, w in parsed})
  fig, axes = plt.subplots(1, len(ways), figsize=(6 * len(ways), 4.5), squeeze=False)
  for ax, way in zip(axes[0], ways):
    for (method, w), by_shot in parsed.items():
      if w != way:
        continue
      shots = sorted(by_shot)
      accuracy = [100 * by_shot[s]["accuracy"] for s in shots]
      ci = [100 * by_shot[s]["ci95"] for s in shots]
      style = "-" if method in BASELINE_NAMES else "--"
      ax.errorbar(shots, accuracy, yerr=ci, fmt=style + "o", capsize=3, markersize=4,
                  label=method_name(method, by_shot[shots[0]]))
    ax.set_xscale("log")
    ax.set_xticks(shots, [str(s) for s in shots])
    ax.set_xlabel("shots per class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Omniglot {way}-way: transfer (solid) vs meta-learning (dashed)")
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True
