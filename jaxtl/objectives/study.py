"""Do you need labels to pre-train, and does pre-training data need to be diverse? On
Omniglot: `study(config, workdir)` (`experiments.pretraining`).

For each objective of `config.objectives` (`scratch`: no pre-training, the floor), each
number of background alphabets in `config.alphabets` and each seed:
  1. the pre-training images: `num_images` drawings (0: all of them) of the characters of
     `alphabets` background alphabets drawn with the seed (Lake's background split; the
     few-shot tasks come from the evaluation alphabets, never seen in pre-training);
  2. pre-train MAML's network with the objective (`jaxtl.finetune.trainer`, a run
     folder that checkpoints and resumes; supervised: the characters as classes);
  3. score the transfer baselines of `config.baselines` on Omniglot few-shot tasks of
     the evaluation alphabets (`config.fewshot`: `jaxtl.meta.shots`' tasks, 600 test
     tasks, steps and step size picked on validation characters of the background set).
Every cell is saved under `workdir/cells/` when done, so a rerun resumes.
The answer to the first question is the `labels` variant (all 30 alphabets, every
image); to the second, the `diversity` variant (a fixed image count, 1..30 alphabets,
3 seeds).
"""
import os

import jax
import numpy as np
from absl import logging

from jaxtl import checkpoint, workdir as run_dir
from jaxtl.data import ImageDataset, load_dataset
from jaxtl.errors import ConfigError
from jaxtl.finetune import trainer
from jaxtl.finetune.surgical_report import ci95
from jaxtl.meta import shots
from jaxtl.metrics import pyplot, write_results, write_text
from jaxtl.models import build_model
from jaxtl.objectives import OBJECTIVES

BACKGROUND_ALPHABETS = 30


def pretraining_images(config, alphabets: int, seed: int) -> ImageDataset:
  """`config.num_images` drawings (0: all) of the characters of `alphabets` background
  alphabets, both drawn with `seed`; labels: the characters, relabelled 0..C-1."""
  data = load_dataset("omniglot", "background", data_dir=config.data_dir,
                      source=config.source)
  rng = np.random.default_rng([config.data_seed, alphabets, seed])
  names = np.unique(data.metadata["alphabet"])
  chosen = rng.choice(names, alphabets, replace=False)
  index = np.flatnonzero(np.isin(data.metadata["alphabet"], chosen))
  if config.num_images:
    if config.num_images > len(index):
      raise ConfigError(f"num_images={config.num_images} exceeds the {len(index)} drawings "
                        f"of alphabets {sorted(chosen.tolist())}; the smallest background "
                        "alphabet has 280.")
    index = np.sort(rng.choice(index, config.num_images, replace=False))
  chosen_data = data.subset(index)
  _, labels = np.unique(chosen_data.labels, return_inverse=True)
  return ImageDataset(chosen_data.images, labels.astype(np.int32),
                      f"omniglot-background-{alphabets}-alphabets", source=data.source)


def pretrain(config, workdir: str, objective: str, alphabets: int, seed: int):
  """(model, params, batch_stats) pre-trained with `objective` (random for `scratch`)."""
  images = pretraining_images(config, alphabets, seed)
  cfg = config.pretrain.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.seed = seed
    cfg.objective = "supervised" if objective == "scratch" else objective
  # The run's own test set: 500 of its training images (a sanity number; the study's
  # numbers are the transfer ones, on characters it never saw).
  test = images.subset(np.arange(min(500, len(images))))
  num_classes = images.num_classes
  if objective == "scratch":
    model = build_model(cfg.model, num_classes=num_classes, **dict(cfg.model_kwargs))
    variables = model.init(jax.random.PRNGKey(seed), images.images[:1], train=False)
    return model, variables["params"], variables.get("batch_stats", {})
  folder = os.path.join(workdir, "pretrain", f"{objective}_{alphabets}alphabets_seed{seed}")
  if run_dir.finished_results(cfg, folder) is None:
    trainer.train_and_evaluate(cfg, folder, data=(images, images.subset(np.arange(0)), test))
  network = shots.load_network(config.fewshot, folder)
  return network[:3]


def study(config, workdir: str) -> dict:
  """Every cell (resuming from `workdir/cells/`); writes results.json and results.md."""
  unknown = sorted(set(config.objectives) - set(OBJECTIVES + ("scratch",)))
  if unknown:
    raise ConfigError(f"Unknown objectives {unknown}; valid: scratch, {', '.join(OBJECTIVES)}.")
  bad = [a for a in config.alphabets if not 1 <= a <= BACKGROUND_ALPHABETS]
  if bad:
    raise ConfigError(f"alphabets {bad}: each must be in 1..{BACKGROUND_ALPHABETS}.")
  os.makedirs(workdir, exist_ok=True)
  cells = {}
  for objective in config.objectives:
    for alphabets in config.alphabets:
      for seed in config.seeds:
        network = None
        for way in config.fewshot.ways:
          for shot in config.fewshot.shots:
            for name in config.baselines:
              key = f"{objective}_{alphabets}a_s{seed}_{name}_{way}w{shot}s"

              def compute():
                nonlocal network
                if network is None:
                  network = pretrain(config, workdir, objective, alphabets, seed)
                picks = {"linear_probe": cells.get(
                    f"{objective}_{alphabets}a_s{seed}_linear_probe_{way}w{shot}s", {})}
                return shots.baseline_cell(config.fewshot, name, way, shot, network, picks)
              cells[key] = shots.cached(workdir, key, compute)
  table = summarize(cells)
  write_results(workdir, config, {"cells": cells, "summary": table}, "pretraining")
  write_text(os.path.join(workdir, "results.md"), format_table(table) + "\n")
  if len(config.alphabets) > 1:
    plot(table, os.path.join(workdir, "results.png"))
  return table


def summarize(cells: dict) -> dict:
  """{objective: {alphabets: {"baseline_WwSs": {accuracy, ci95, seeds}}}}: over seeds,
  the mean of each seed's accuracy with a 95% t-interval (with one seed, the task CI)."""
  grouped = {}
  for key, cell in cells.items():
    objective, alphabets, seed, rest = key.split("_", 3)
    grouped.setdefault(objective, {}).setdefault(int(alphabets[:-1]), {}).setdefault(
        rest, []).append(cell)
  out = {}
  for objective, by_alphabets in grouped.items():
    for alphabets, by_setting in by_alphabets.items():
      for setting, seeds in by_setting.items():
        values = [c["accuracy"] for c in seeds]
        out.setdefault(objective, {}).setdefault(str(alphabets), {})[setting] = {
            "accuracy": float(np.mean(values)),
            "ci95": ci95(values) if len(values) > 1 else seeds[0]["ci95"],
            "seeds": len(values)}
  return out


def format_table(summary: dict) -> str:
  """One table per setting (baseline, way, shot): objectives as rows, alphabets as
  columns, test accuracy (%) +- 95% CI."""
  settings = list(dict.fromkeys(s for o in summary.values() for a in o.values() for s in a))
  parts = []
  for setting in settings:
    name, task = setting.rsplit("_", 1)
    way, shot = task[:-1].split("w")
    alphabets = sorted({int(a) for o in summary.values() for a in o})
    seeds = max(c["seeds"] for o in summary.values() for a in o.values()
                for s, c in a.items() if s == setting)
    lines = [f"{shots.BASELINE_NAMES.get(name, name)}, Omniglot {way}-way {shot}-shot on the "
             f"evaluation alphabets: test accuracy (%) +- 95% CI "
             f"({'over ' + str(seeds) + ' seeds' if seeds > 1 else 'over 600 tasks, one seed'})"
             ", by pre-training alphabets\n",
             "| pre-training | " + " | ".join(map(str, alphabets)) + " |",
             "|---|" + "---:|" * len(alphabets)]
    for objective, by_alphabets in summary.items():
      cells = [by_alphabets.get(str(a), {}).get(setting) for a in alphabets]
      lines.append(f"| {objective} | " + " | ".join(
          f"{100 * c['accuracy']:.2f} +- {100 * c['ci95']:.2f}" if c else "" for c in cells)
                   + " |")
    parts.append("\n".join(lines))
  return "\n\n".join(parts)


def plot(summary: dict, path: str) -> bool:
  """Transfer accuracy against pre-training alphabets, a panel per setting, a line per
  objective with its 95% CI."""
  plt = pyplot()
  if plt is None:
    return False
  settings = list(dict.fromkeys(s for o in summary.values() for a in o.values() for s in a))
  fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 4), squeeze=False)
  for ax, setting in zip(axes[0], settings):
    for objective, by_alphabets in summary.items():
      points = sorted((int(a), c[setting]) for a, c in by_alphabets.items() if setting in c)
      ax.errorbar([a for a, _ in points], [100 * c["accuracy"] for _, c in points],
                  yerr=[100 * c["ci95"] for _, c in points], fmt="-o", capsize=3,
                  markersize=4, label=objective)
    ax.set_xscale("log")
    ax.set_xlabel("pre-training alphabets (same number of images)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(setting)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True
