"""Meta-training and evaluation: `train_and_evaluate(config, workdir)`, `evaluate(...)`.

One jitted call runs `steps_per_call` meta-iterations under `lax.scan`; tasks are
sampled on the device inside it, so the steady state has no host round-trips. The
meta-batch is vmapped over tasks (`task_batching="auto"`). With per-task weights,
vmap turns a conv into a grouped conv, which XLA:CPU runs ~12x slower than a loop, and
even ProtoNets' vmapped conv with shared weights trains 30x slower there; so
`conv="auto"` computes convolutions as patches @ kernel on CPU (a batched matrix
product under vmap; `jaxtl.models.layers`) and with XLA's conv elsewhere. With
`conv="xla"` forced on CPU, "auto" batching falls back to `lax.map` over tasks.
"""
import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from jaxtl import checkpoint, loop, partition, sharding, stats, workdir as run_dir
from jaxtl.data import ImageDataset, load_dataset
from jaxtl.errors import ConfigError, MissingInputError
from jaxtl.meta import tasks
from jaxtl.meta.algorithms import TASK_MODELS, MetaLearner
from jaxtl.metrics import write_results
from jaxtl.models import MODELS, build_model
from jaxtl.models.blackbox import BlackBox
from jaxtl.models.relation import RelationNet


def make_learner(config, model=None) -> MetaLearner:
  """The config's learner; `model` (any Flax module called as `model(x, train=...)`, with
  the task's outputs) replaces `config.model` and `model_kwargs`."""
  regression = config.dataset == "sinusoid"
  table = tuple(tuple(r) for r in config.inner_table) if config.inner_table else None
  batching = config.task_batching
  if model is None:
    kwargs = dict(config.model_kwargs)
    if config.algorithm in TASK_MODELS:  # the embedder's settings, inside the task model
      kwargs = {k: v for k, v in kwargs.items() if k in ("features", "downsample", "conv")}
      kwargs["way"] = config.way
    elif config.model == "mlp":
      kwargs.setdefault("num_outputs", 1 if regression else config.way)
    else:
      kwargs["num_classes"] = 0 if config.algorithm == "protonet" else config.way
    cpu = jax.default_backend() == "cpu"  # see the module docstring
    if kwargs.get("conv") == "auto":
      kwargs["conv"] = "im2col" if cpu else "xla"
    task_model = {"blackbox": BlackBox, "relation": RelationNet}.get(config.algorithm)
    model = task_model(**kwargs) if task_model else build_model(config.model, **kwargs)
    if batching == "auto":
      batching = "map" if cpu and kwargs.get("conv") == "xla" else "vmap"
  elif batching == "auto":
    batching = "vmap"
  return MetaLearner(
      model=model, algorithm=config.algorithm, loss="mse" if regression else "xent",
      inner_table=table, inner_steps=config.inner_steps,
      inner_lr=config.inner_lr, inner_lr_mode=config.inner_lr_mode, remat=config.remat,
      task_batching=batching, ways=config.way, batch_norm=config.batch_norm,
      support_steps=config.support_steps, support_lr=config.support_lr)


class TaskData(NamedTuple):
  """Class-major train / test arrays (None for sinusoids), samplers (key, data, batch) ->
  Episodes, where the data came from (`provenance`, recorded in results.json) and each
  test class's alphabet and name (None where the data has none), for samplers of other
  task shapes."""
  train: Any
  test: Any
  train_sampler: Callable
  test_sampler: Callable
  provenance: dict
  test_groups: Any = None
  test_names: Any = None


def _class_hash(classes) -> str:
  return hashlib.sha256(np.asarray(classes, np.int64).tobytes()).hexdigest()[:16]


def _rotated(groups):
  """The groups of `tasks.rotations`' classes: a rotated alphabet is an alphabet of its own."""
  if groups is None:
    return None
  return np.concatenate([groups + r * (groups.max() + 1) for r in range(4)])


def train_way(config) -> int:
  """N of the training episodes: `config.train_way` (0: `way`), which only a learner with
  no N-sized head can differ in (ProtoNets; Snell et al. train Omniglot with 60)."""
  way = config.get("train_way", 0) or config.way
  if way != config.way and config.algorithm != "protonet":
    raise ConfigError(f"train_way={way} differs from way={config.way}, which only protonet "
                      f"can do ({config.algorithm!r} has a {config.way}-way head).")
  return way


def make_task_data(config) -> TaskData:
  if config.dataset == "sinusoid":
    train_sampler = lambda key, data, batch: tasks.sample_sinusoid(
        key, batch, config.shot, config.query)[0]
    test_sampler = lambda key, data, batch: tasks.sample_sinusoid(
        key, batch, config.test_shot, config.test_query)[0]
    return TaskData(None, None, train_sampler, test_sampler,
                    {"dataset": "sinusoid", "source": "generated"})
  parts = [load_dataset(config.dataset, s, data_dir=config.data_dir, source=config.source)
           for s in config.splits]
  dataset = parts[0] if len(parts) == 1 else ImageDataset(  # classes pooled over splits
      np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
      parts[0].name, source=parts[0].source)
  splits = tasks.class_splits(dataset, config.class_split, config.split_seed,
                              config.num_val_classes, config.num_train_classes,
                              config.num_val_alphabets)
  provenance = dict(dataset.provenance(), train_classes_sha256=_class_hash(splits["train"]),
                    test_classes_sha256=_class_hash(splits[config.eval_split]))
  train = tasks.class_major(dataset, splits["train"])
  test = tasks.class_major(dataset, splits[config.eval_split])
  groups = {part: tasks.class_alphabets(dataset, splits[name])
            if "alphabet" in dataset.metadata else None
            for part, name in (("train", "train"), ("test", config.eval_split))}
  if config.rotate_train:
    train, groups["train"] = tasks.rotations(train), _rotated(groups["train"])
  names = (tuple(dataset.class_names[c] for c in splits[config.eval_split])
           if dataset.class_names and not config.rotate_test else None)
  if config.rotate_test:
    test, groups["test"] = tasks.rotations(test), _rotated(groups["test"])
  for data, way, shot, query in [(train, train_way(config), config.shot, config.query),
                                 (test, config.way, config.test_shot, config.test_query)]:
    tasks.check_episode_shape(data.shape[0], data.shape[1], way, shot, query)
  if config.train_tasks in tasks.LAKE_TASKS:
    raise ConfigError(f"train_tasks={config.train_tasks!r} names Lake's test tasks; valid "
                      "for training: 'random', 'alphabet'.")
  if {"alphabet", *tasks.LAKE_TASKS} & {config.train_tasks, config.test_tasks} and (
      "drawer" not in dataset.metadata):
    raise ConfigError(f"alphabet tasks keep support and query drawers apart: they need "
                      f"Omniglot's drawer metadata, which the offline mirror has and "
                      f"{dataset.source} has not (--config.source=mirror).")
  train_sampler = tasks.with_affine(
      tasks.make_sampler(config.train_tasks, train_way(config), config.shot, config.query,
                         groups["train"]), **dict(config.get("train_affine") or {}))
  test_sampler = tasks.make_sampler(config.test_tasks, config.way, config.test_shot,
                                    config.test_query, groups["test"], names)
  return TaskData(jnp.asarray(train), jnp.asarray(test), train_sampler, test_sampler,
                  provenance, groups["test"], names)


def make_meta_step(learner: MetaLearner, tx, sampler, meta_batch: int, steps_per_call: int,
                   mesh=None):
  """step(state, data, key) -> (state, (losses, metrics)) running `steps_per_call`
  meta-iterations; the tasks of iteration i come from fold_in(key, i). With a `mesh`
  (`jaxtl.sharding`), the tasks are split over its devices; state and data replicated."""
  def one(state, data, key):
    episodes = sampler(jax.random.fold_in(key, state["step"]), data, meta_batch)
    if mesh is not None:
      episodes = sharding.shard_batch(episodes, mesh)
    (loss, metric), grads = learner.meta_gradients(state["meta_params"], state["batch_stats"],
                                                   episodes)
    updates, opt_state = tx.update(grads, state["opt_state"], state["meta_params"])
    meta_params = optax.apply_updates(state["meta_params"], updates)
    return dict(state, step=state["step"] + 1, meta_params=meta_params,
                opt_state=opt_state), (loss, metric)

  def step(state, data, key):
    return jax.lax.scan(lambda s, _: one(s, data, key), state, None, length=steps_per_call)

  replicated = {} if mesh is None else {"out_shardings": sharding.replicated(mesh)}
  return jax.jit(step, donate_argnums=0, **replicated)


def evaluate(config, learner: MetaLearner, meta_params, batch_stats, data, sampler,
             mesh=None) -> dict:
  """Mean and 95% CI (1.96 std / sqrt(n)) of the query metric over `eval_tasks` test
  tasks drawn with `eval_seed`, after each number of steps in `eval_steps`."""
  per_task = evaluate_per_task(config, learner, meta_params, batch_stats, data, sampler, mesh)
  return summarize(config, learner, per_task)


def evaluate_per_task(config, learner: MetaLearner, meta_params, batch_stats, data, sampler,
                      mesh=None) -> np.ndarray:
  """The query metric of each of `eval_tasks` tasks drawn with `eval_seed` after 0, 1, ...
  adaptation steps: (eval_tasks, steps + 1)."""
  steps = max(max(config.eval_steps), config.test_inner_steps)
  lr = config.test_inner_lr or None
  score = lambda episodes, _: learner.evaluate_tasks(meta_params, batch_stats, episodes, steps,
                                                     lr=lr, backtrack=config.test_backtrack)
  return tasks.over_eval_tasks(config, data, sampler, score, mesh)


def summarize(config, learner: MetaLearner, per_task: np.ndarray) -> dict:
  """Mean and 95% CI of `evaluate_per_task`'s array, at `eval_steps` and `test_inner_steps`."""
  name = "mse" if learner.loss == "mse" else "accuracy"
  with np.errstate(all="ignore"):  # a diverged fine-tuning run is reported as inf / nan
    mean = per_task.mean(0)
    ci95 = np.array([stats.ci95(column) for column in per_task.T])  # per step: one formula
  metrics = {f"test_{name}": float(mean[config.test_inner_steps]),
             f"test_{name}_ci95": float(ci95[config.test_inner_steps]),
             f"test_{name}_by_steps": {str(s): float(mean[s]) for s in config.eval_steps},
             f"test_{name}_ci95_by_steps": {str(s): float(ci95[s]) for s in config.eval_steps},
             "test_inner_steps": config.test_inner_steps, "eval_tasks": len(per_task),
             # each task's score, for paired comparisons of runs scored on the same tasks
             f"test_{name}_per_task": [round(float(v), 6)
                                       for v in per_task[:, config.test_inner_steps]]}
  if name == "accuracy":  # Lake et al. report error rates
    metrics["test_error"] = 1.0 - metrics["test_accuracy"]
  return metrics


def init_state(config, learner, tx, train_data, sampler):
  example = sampler(jax.random.PRNGKey(0), train_data, 1).support_x[0]
  meta_params, batch_stats = learner.init(jax.random.PRNGKey(config.seed), example)
  return dict(step=jnp.zeros((), jnp.int32), meta_params=meta_params, batch_stats=batch_stats,
              opt_state=tx.init(meta_params))


def make_outer_optimizer(config):
  if config.meta_optimizer == "adam":
    return optax.adam(config.meta_lr)
  if config.meta_optimizer == "sgd":
    return optax.sgd(config.meta_lr)
  raise ConfigError(f"Unknown meta_optimizer {config.meta_optimizer!r}; valid: adam, sgd.")


def check_config(config):
  """Ranges and multiples of the loop's counts; names are checked where they are used
  (`make_learner`, `make_outer_optimizer`, `make_task_data`), all before a run writes."""
  run_dir.check_at_least(config, 1, ("num_steps", "steps_per_call", "meta_batch", "log_every",
                                     "checkpoint_every", "eval_tasks", "eval_batch"))
  run_dir.check_at_least(config, 0, ("inner_steps", "test_inner_steps", "num_devices"))
  if min(config.eval_steps) < 0:
    raise ConfigError(f"eval_steps={tuple(config.eval_steps)} must be >= 0.")
  if config.get("test_affine", {}).get("views", 1) != 1:
    raise ConfigError(f"test_affine.views={config.test_affine.views}: test-time augmentation "
                      "is meta_eval's (jaxtl.meta.ensemble); train with views=1 and evaluate "
                      "the run with it.")
  per_call = config.steps_per_call  # a jitted call runs this many meta-iterations
  for name in ("num_steps", "log_every", "checkpoint_every"):
    if config[name] % per_call:
      nearest = per_call * max(1, config[name] // per_call)
      raise ConfigError(f"{name}={config[name]} must be a multiple of steps_per_call="
                        f"{per_call}, e.g. {nearest}.")


def train_and_evaluate(config, workdir: str, step_callback=None, model=None) -> dict:
  """Meta-trains per `config` (experiments/configs/meta.py), resuming from the last
  checkpoint in `workdir`, then evaluates; writes `workdir/results.json`. `model`: an
  optional Flax module instead of `config.model` (`make_learner`)."""
  check_config(config)
  learner = make_learner(config, model)
  mesh = sharding.make_mesh(config.num_devices, config.meta_batch, "meta_batch")
  train_data, test_data, train_sampler, test_sampler, provenance = make_task_data(config)[:5]
  tx = make_outer_optimizer(config)
  run_dir.prepare(config, workdir)  # the first write: the config has been checked above
  state = init_state(config, learner, tx, train_data, train_sampler)
  state, train_data = sharding.replicate((state, train_data), mesh)
  logging.info("%s: %s, inner loop adapts:\n%s", config.algorithm, learner.task_batching,
               partition.describe(
                   state["meta_params"]["params"], learner.labels(state["meta_params"]["params"])))
  step_fn = make_meta_step(dataclasses.replace(learner, ways=train_way(config)), tx,
                           train_sampler, config.meta_batch, config.steps_per_call, mesh)
  # Tasks' key: derived from the seed, not PRNGKey(seed + 1), the next seed's init key.
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
  name = "mse" if learner.loss == "mse" else "accuracy"

  def meta_step(state, step):
    state, (losses, metrics) = step_fn(state, train_data, key)
    return state, losses, {"meta_loss": losses, f"query_{name}": metrics}

  trained = loop.run(workdir, state, meta_step, num_steps=config.num_steps,
                     log_every=config.log_every, checkpoint_every=config.checkpoint_every,
                     hint="Lower meta_lr or inner_lr.", stride=config.steps_per_call,
                     rate_name="meta_iterations_per_second", step_callback=step_callback,
                     loss_bound=None if config.dataset == "sinusoid" else 100 * np.log(config.way))
  state, step, segments = trained.state, trained.step, trained.segments
  results = evaluate(config, learner, state["meta_params"], state["batch_stats"],
                     sharding.replicate(test_data, mesh), test_sampler, mesh)
  if train_data is not None:  # (classes, examples, *input shape); jaxtl.adapt reads it
    results["input_shape"] = list(train_data.shape[2:])
  results.update(meta_iterations=step, train_seconds=run_dir.total_seconds(segments),
                 train_segments=segments, meta_iterations_per_second=trained.steps_per_second,
                 data=provenance)
  trained.logger.close()
  checkpoint.save_variables(workdir, {"meta_params": state["meta_params"],
                                      "batch_stats": state["batch_stats"]})
  write_results(workdir, config, results, "meta")
  logging.info("%s: test %s after %d steps %.4f +- %.4f", workdir, name,
               config.test_inner_steps, results[f"test_{name}"], results[f"test_{name}_ci95"])
  return results


def _model_spec(config: dict) -> tuple:
  """(model name, its keyword arguments with the model's defaults filled in), without the
  ones that do not change what trained weights compute (`conv` picks a kernel, and
  `head_init_std` only acts at initialisation)."""
  name, kwargs = config.get("model"), dict(config.get("model_kwargs") or {})
  if name in MODELS:
    defaults = {f.name: f.default for f in dataclasses.fields(MODELS[name])
                if f.default is not dataclasses.MISSING and f.name not in ("parent", "name")}
    kwargs = {**defaults, **kwargs}
  for key in ("conv", "head_init_std"):
    kwargs.pop(key, None)
  return name, json.loads(json.dumps(kwargs))  # tuples -> lists, as in the saved JSON


def check_same_model(config, workdir: str):
  """Raises ValueError naming the differences if the run in `workdir` (its config.json or
  results.json) was trained with another model than `config` describes."""
  saved = run_dir.saved_config(workdir)
  if saved is None:
    return
  if "algorithm" not in saved:  # not a meta_train folder
    what = f"a fine-tuning run (strategy={saved['strategy']!r})" if "strategy" in saved else \
        "a run of another experiment"
    raise ConfigError(f"{workdir} holds {what}, not a meta-learning run: meta_eval evaluates "
                      f"the folders of experiments.meta_train.")
  (saved_name, saved_kwargs), (name, kwargs) = _model_spec(saved), _model_spec(
      json.loads(config.to_json_best_effort()))
  diff = {k: (saved_kwargs.get(k), kwargs.get(k)) for k in set(saved_kwargs) | set(kwargs)
          if saved_kwargs.get(k) != kwargs.get(k)}
  if saved_name != name or diff:
    overrides = " ".join(f"--config.model_kwargs.{k}={v[0]}" for k, v in sorted(diff.items()))
    raise ConfigError(f"{workdir} was trained with model {saved_name!r} {saved_kwargs}; the "
                      f"config describes {name!r} {kwargs}. Evaluate it with the same model"
                      + (f" (e.g. {overrides})." if overrides and saved_name == name else "."))


def load_run(workdir: str):
  """(variables, progress) of a meta-learning run: its final variables, or, for a run
  still in progress, its latest training checkpoint; `progress` has `meta_iterations`
  and training time (and `num_steps`, None, for a run in progress)."""
  if os.path.isdir(os.path.join(workdir, checkpoint.VARIABLES_DIR)):
    trained = run_dir.saved_results(workdir).get("metrics", {})
    return checkpoint.load_variables(workdir), {
        k: trained[k] for k in ("meta_iterations", "train_seconds", "train_segments",
                                "input_shape") if k in trained}
  # Look before opening a manager, which would create the folder.
  has_checkpoints = os.path.isdir(os.path.join(workdir, "checkpoints"))
  ckpts = checkpoint.manager(workdir) if has_checkpoints else None
  step = ckpts.latest_step() if ckpts else None
  if step is None:
    raise MissingInputError(f"{workdir} holds neither final variables "
                            f"({checkpoint.VARIABLES_DIR}/) nor training checkpoints.")
  segments = run_dir.segments_up_to(workdir, int(step))
  logging.info("%s: no final variables; using the training checkpoint at meta-iteration %d.",
               workdir, step)
  return ckpts.restore(step), {"meta_iterations": int(step), "num_steps": None,
                               "train_seconds": run_dir.total_seconds(segments),
                               "train_segments": segments}


def evaluate_checkpoint(config, workdir: str, outdir: str = "") -> dict:
  """Re-evaluates the final meta-parameters saved in `workdir`, or, for a run still in
  progress, its latest training checkpoint (results then say `meta_iterations` of
  `num_steps`); writes results.json to `outdir` (default: `workdir`, replacing the
  training run's)."""
  if config.get("test_affine", {}).get("views", 1) != 1:
    raise ConfigError(f"test_affine.views={config.test_affine.views}: evaluate with "
                      "jaxtl.meta.ensemble.evaluate_ensemble (meta_eval does).")
  check_same_model(config, workdir)
  saved, progress = load_run(workdir)
  if "num_steps" in progress:
    progress["num_steps"] = config.num_steps
  learner = make_learner(config)
  data = make_task_data(config)
  test_data, test_sampler, provenance = data.test, data.test_sampler, data.provenance
  mesh = sharding.make_mesh(config.num_devices)
  saved, test_data = sharding.replicate((saved, test_data), mesh)
  metrics = evaluate(config, learner, saved["meta_params"], saved.get("batch_stats", {}),
                     test_data, test_sampler, mesh)
  metrics.update(progress, data=provenance)
  outdir = outdir or workdir
  os.makedirs(outdir, exist_ok=True)
  write_results(outdir, config, metrics, "meta", evaluated_by="experiments.meta_eval",
                checkpoint=workdir)
  return metrics
