"""Few-shot evaluation of a network on episodic tasks, as the meta-learners are scored.

A pre-trained network is adapted task by task by a transfer baseline
(`jaxtl.meta.baselines`: nearest centroid, linear probe, Baseline++, fine-tuning, LP-FT)
whose step size and number of steps are picked on validation tasks, never on the test
split; a meta-trained run is re-evaluated with its own test-time procedure. Both return
a cell: accuracy, 95% CI (`jaxtl.stats`) and the number of tasks. Used by the shot sweep
and the pre-training study (`jaxtl.studies`).
"""
import functools

import jax
import ml_collections
import numpy as np

from jaxtl import checkpoint, stats, workdir as run_dir
from jaxtl.errors import ConfigError
from jaxtl.meta import tasks, train
from jaxtl.meta.baselines import Baseline
from jaxtl.models import build_model

TUNED = ("linear_probe", "cosine", "finetune", "lp_ft")  # those with steps and a step size


def task_config(config, way: int, shot: int, split: str = "test", steps: int = 0,
                lr: float = 0.0):
  """`config.tasks` for `way`-way `shot`-shot tasks of `split` (val: `val_tasks` tasks
  drawn with `val_seed`), evaluated after 0..`steps` steps of size `lr`."""
  cfg = config.tasks.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.way, cfg.test_shot, cfg.test_query, cfg.eval_split = way, shot, config.query, split
    if split == "val":
      cfg.eval_tasks, cfg.eval_seed = config.val_tasks, config.val_seed
      if cfg.test_tasks in tasks.LAKE_TASKS:  # Lake's are test tasks: tune within-alphabet
        cfg.test_tasks = "alphabet"
    cfg.eval_batch = min(cfg.eval_batch, cfg.eval_tasks)
    cfg.test_inner_steps, cfg.eval_steps = steps, (0, steps)
    cfg.test_inner_lr, cfg.test_backtrack = lr, True
  return cfg


def task_model(name: str, **kwargs):
  """The pre-trained network as the baselines adapt it, a task at a time: on CPU conv4's
  convolutions as patches @ kernel (`jaxtl.models.layers`), the same function 2.7x
  faster on a task's few images than XLA's convolution (5-way 5-shot fine-tuning)."""
  if name == "conv4" and jax.default_backend() == "cpu":
    kwargs["conv"] = "im2col"
  return build_model(name, **kwargs)


def load_network(config, path: str):
  """(model, params, batch_stats, provenance) of a finished pre-training run in `path`
  (any objective: the baselines replace its head), checked against the tasks' images."""
  saved = run_dir.load_config(path)
  if saved is None or "strategy" not in saved:  # not a fine-tuning trainer's config
    raise ConfigError(f"init_from: {path} holds no pre-training run (experiments.pretrain).")
  variables = checkpoint.load_variables(path)
  results = run_dir.saved_results(path).get("metrics", {})
  shape = list(image_shape(config))
  if list(results.get("input_shape", [])) != shape:
    raise ConfigError(f"init_from: {path} was trained on images of shape "
                      f"{results.get('input_shape')}, the tasks' are {shape}.")
  head = variables["params"].get("head", {})  # an objective's own head has no kernel
  outputs = head["kernel"].shape[-1] if "kernel" in head else 1
  model = task_model(saved.model, num_classes=outputs, **dict(saved.model_kwargs))
  return model, variables["params"], variables.get("batch_stats", {}), results.get("data")


def _summary(per_task: np.ndarray, column: int) -> dict:
  """Accuracy, its CI over the tasks, and each task's score (in task order, so that tables
  can pair methods scored on the same tasks, or count Lake's runs by alphabet)."""
  accuracy = per_task[:, column]
  return {"accuracy": float(accuracy.mean()),
          "ci95": stats.ci95(accuracy),
          "tasks": len(accuracy),
          "per_task": np.round(accuracy.astype(float), 6).tolist()}


# The task config's fields that choose the evaluation images (way and shot only shape the
# episodes, checked where they are drawn).
_DATA_FIELDS = ("dataset", "data_dir", "source", "splits", "class_split", "split_seed",
                "num_val_classes", "num_val_alphabets", "num_train_classes", "eval_split",
                "rotate_test", "test_tasks")


def _eval_data(cfg):
  """(cfg's evaluation classes, class-major; each one's alphabet or None), read once per
  process."""
  return _read_eval_data(tuple(
      (f, tuple(cfg[f]) if isinstance(cfg[f], list) else cfg[f]) for f in _DATA_FIELDS))


@functools.lru_cache(maxsize=None)
def _read_eval_data(fields: tuple):
  cfg = ml_collections.ConfigDict(dict(fields))
  cfg.way = cfg.shot = cfg.query = cfg.test_shot = cfg.test_query = 1
  cfg.rotate_train = False  # only the evaluation classes are kept
  cfg.train_tasks = "random"  # test_tasks kept: alphabet tasks check the drawers' order
  if cfg.test_tasks in tasks.LAKE_TASKS:  # their 20-way shape is checked where drawn
    cfg.test_tasks = "alphabet"
  data = train.make_task_data(cfg)
  return data.test, data.test_groups, data.test_names


def image_shape(config) -> tuple:
  """(height, width, channels) of the few-shot tasks' images."""
  return tuple(_eval_data(task_config(config, max(config.ways), 1))[0].shape[2:])


def _scores(cfg, method, params, batch_stats) -> np.ndarray:
  """Query accuracy after 0..steps steps of each of cfg's evaluation tasks (cfg.test_tasks:
  random or within-alphabet)."""
  data, groups, names = _eval_data(cfg)
  tasks.check_episode_shape(data.shape[0], data.shape[1], cfg.way, cfg.test_shot,
                            cfg.test_query)
  sampler = tasks.make_sampler(cfg.test_tasks, cfg.way, cfg.test_shot, cfg.test_query, groups,
                               names)
  return train.evaluate_per_task(cfg, method, params, batch_stats, data, sampler)


def baseline_cell(config, name, way, shot, network, picks) -> dict:
  """One baseline at one (way, shot): its step size and steps picked on validation tasks,
  then its accuracy on the test tasks."""
  model, params, batch_stats = network
  probe = picks.get("linear_probe", {})
  baseline = Baseline(name, model.clone(num_classes=way), way,
                      probe_steps=probe.get("steps", 0), probe_lr=probe.get("lr", 1.0))
  if name not in TUNED:
    per_task = _scores(task_config(config, way, shot), baseline, params, batch_stats)
    return dict(_summary(per_task, 0), steps=0, lr=None)
  steps, val = config.steps[name], {}
  for lr in config.lr_grid[name]:
    per_task = _scores(task_config(config, way, shot, "val", steps, lr), baseline, params,
                       batch_stats)
    val[lr] = per_task.mean(0)  # accuracy after 0..steps steps
  lr, best = max(((lr, int(np.argmax(curve))) for lr, curve in val.items()),
                 key=lambda pick: val[pick[0]][pick[1]])
  per_task = _scores(task_config(config, way, shot, "test", best, lr), baseline, params,
                     batch_stats)
  return dict(_summary(per_task, best), steps=best, lr=lr,
              val_accuracy={f"{k:g}": [float(a) for a in v] for k, v in val.items()})


def checkpoint_cell(config, path: str, shot: int) -> dict:
  """A meta-learned run's accuracy at `shot` shots, with its own test-time procedure."""
  saved = run_dir.load_config(path)
  split = (config.tasks.dataset, config.tasks.class_split, config.tasks.split_seed)
  if (saved.dataset, saved.class_split, saved.split_seed) != split:
    raise ConfigError(f"{path} was meta-trained on another class split "
                      f"{(saved.dataset, saved.class_split, saved.split_seed)} than {split}: "
                      "its test tasks would not be the baselines'.")
  cfg = task_config(config, saved.way, shot, steps=saved.test_inner_steps,
                    lr=saved.test_inner_lr)
  with cfg.unlocked():  # the run's own network, algorithm and test-time settings
    for field in ("model", "model_kwargs", "algorithm", "inner_table", "inner_steps",
                  "inner_lr", "inner_lr_mode", "test_backtrack", "batch_norm"):
      cfg[field] = saved[field]
    if cfg.model == "conv4":  # how convolutions are computed, not what: runs saved before
      cfg.model_kwargs.conv = "auto"  # the im2col kernel default to XLA's, 12x slower here
  variables, progress = train.load_run(path)  # a run in progress: its latest checkpoint
  per_task = _scores(cfg, train.make_learner(cfg), variables["meta_params"],
                     variables.get("batch_stats", {}))
  return dict(_summary(per_task, saved.test_inner_steps), algorithm=saved.algorithm,
              trained_shot=saved.shot, meta_iterations=progress.get("meta_iterations"),
              num_steps=saved.num_steps if "num_steps" in progress else None)
