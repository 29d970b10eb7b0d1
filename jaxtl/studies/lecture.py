"""The lecture in one table (MAML appendix Table 2 protocol), on sinusoid regression:
pre-training on all tasks then fine-tuning, multi-task learning then fine-tuning, and
MAML, each evaluated by fine-tuning on the same 600 5-shot test tasks for 1, 5, 10 steps.

Pre-training and multi-task get the fine-tuning step size from `config.finetune_lr_grid`
that minimises the mean MSE over the reported step counts on 600 *validation* tasks
(another seed); MAML fine-tunes with the step size it was meta-trained for. All three
fine-tune with backtracking (`maml.test_backtrack`): a step that does not lower the
support loss is halved. Without it a fixed step size that suits the validation tasks can
blow up on one test task (seen with other seeds: MAML 651 after 5 steps, nan after 10,
from 1 of 600 tasks; the multi-task row 5229, then nan).
"""
import os

import numpy as np
from absl import logging

from jaxtl import workdir as run_dir
from jaxtl.meta import multitask, train
from jaxtl.metrics import write_results, write_text

PUBLISHED = {  # Finn et al. 2017, appendix Table 2 (MSE after 1 / 5 / 10 steps)
    "maml": {"1": 0.67, "5": 0.38, "10": 0.35},
    "pretrain": {"1": 2.41, "5": 2.23, "10": 2.19},
    "multitask": {"1": 4.19, "5": 3.85, "10": 3.69},  # "multi-task, no reg"
}
NAMES = {"maml": "MAML", "pretrain": "pre-train on all tasks, fine-tune",
         "multitask": "multi-task (shared trunk, per-task heads), fine-tune"}


def _per_task(config, learner, params, lr, seed):
  """Query MSE of each of `eval_tasks` tasks (seed `seed`) after 0, 1, ... fine-tuning steps
  at step size `lr`."""
  cfg = config.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.test_inner_lr, cfg.eval_seed = lr, seed
  sampler = train.make_task_data(cfg).test_sampler
  return cfg, train.evaluate_per_task(cfg, learner, {"params": params, "inner_lr": {}}, {},
                                      None, sampler)


def _tuned(config, learner, params, steps_keys, grid, val_seed):
  """Evaluates at the step size of `grid` with the lowest mean MSE over the reported step
  counts on validation tasks (seed `val_seed`, not the test tasks')."""
  steps = [int(k) for k in steps_keys]
  val_mse = {lr: float(np.mean(_per_task(config, learner, params, lr, val_seed)[1][:, steps]))
             for lr in grid}
  best = min(val_mse, key=lambda lr: val_mse[lr] if np.isfinite(val_mse[lr]) else np.inf)
  cfg, per_task = _per_task(config, learner, params, best, config.eval_seed)
  metrics = train.summarize(cfg, learner, per_task)
  metrics["finetune_lr"] = best
  metrics["val_mse_by_lr"] = {f"{k:g}": v for k, v in val_mse.items()}
  return metrics


def run(config, workdir: str) -> dict:
  """Runs the three methods (each resumable in its own sub-folder); writes results."""
  os.makedirs(workdir, exist_ok=True)
  steps_keys = [str(s) for s in config.maml.eval_steps if s > 0]
  results = {}
  for name in ("maml", "pretrain"):
    sub = os.path.join(workdir, name)
    cfg = config.maml.copy_and_resolve_references()
    with cfg.unlocked():
      cfg.algorithm = name
    results[name] = run_dir.finished_results(cfg, sub) or train.train_and_evaluate(cfg, sub)
    if name == "pretrain":
      saved = train.checkpoint.load_variables(sub)
      results[name] = _tuned(cfg, train.make_learner(cfg), saved["meta_params"]["params"],
                             steps_keys, config.finetune_lr_grid, config.val_seed)
  learner = train.make_learner(config.maml)
  init, last_loss = multitask.train(
      learner.model, config.multitask_pool_seed, config.multitask_tasks,
      config.maml.num_steps, config.maml.meta_batch, config.maml.shot + config.maml.query,
      config.maml.meta_lr, config.maml.seed)
  logging.info("multi-task: final training loss %.4f", last_loss)
  results["multitask"] = _tuned(config.maml, learner, init, steps_keys, config.finetune_lr_grid,
                                config.val_seed)
  table = format_table(results, steps_keys)
  write_text(os.path.join(workdir, "results.md"), table + "\n")
  write_results(workdir, config, results, "lecture", published=PUBLISHED)
  print(table)
  return results


def format_table(results, steps_keys) -> str:
  head = " | ".join(f"{k} step{'s' if k != '1' else ''}" for k in steps_keys)
  rows = [f"| method | {head} | published (Finn et al. 2017) |",
          "|---|" + "---:|" * len(steps_keys) + "---|"]
  for name, r in results.items():
    cells = " | ".join(f"{r['test_mse_by_steps'][k]:.2f} +- {r['test_mse_ci95_by_steps'][k]:.2f}"
                       for k in steps_keys)
    published = " / ".join(f"{PUBLISHED[name][k]:.2f}" for k in steps_keys)
    rows.append(f"| {NAMES[name]} | {cells} | {published} |")
  return ("5-shot sinusoid regression, test MSE (mean +- 95% CI over "
          f"{results['maml']['eval_tasks']} tasks) after k fine-tuning steps\n\n" +
          "\n".join(rows))
