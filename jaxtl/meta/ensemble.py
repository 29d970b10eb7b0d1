"""Ensembles of meta-trained classifiers: each query's class probabilities averaged over
the runs (and, with `test_affine.views` > 1, over warped copies of the task: test-time
augmentation), each run adapted to the task as its own `meta_eval` adapts it, scored on the
tasks `meta_eval` draws (`tasks.over_eval_tasks`), so every member's score here is its
own evaluation's, task by task, and the ensemble can be compared with each member
paired over the same tasks.

`python -m experiments.meta_eval --config=...:VARIANT --workdir=RUN --ensemble=RUN2,RUN3
--outdir=OUT` (the config chooses the tasks; each run brings its own learner).
"""
import os

import jax
import jax.numpy as jnp
import ml_collections

from jaxtl import sharding, workdir as run_dir
from jaxtl.errors import ConfigError
from jaxtl.meta import tasks, train
from jaxtl.meta.algorithms import NO_INNER_LOOP
from jaxtl.metrics import write_results

# What a run's own config decides: its learner and how it adapts at test time. The tasks
# (dataset, split, ways, shots, seeds) come from the config the ensemble is evaluated with.
# `batch_norm` is not one: how the test tasks are normalised is the config's, for every
# member, as `meta_eval` takes it for one run (`--config.batch_norm=support`).
LEARNER_FIELDS = ("algorithm", "model", "model_kwargs", "inner_table", "inner_steps",
                  "inner_lr", "inner_lr_mode", "remat", "task_batching",
                  "test_inner_steps", "test_inner_lr", "test_backtrack")
# The fields that choose which classes a run trained on.
SPLIT_FIELDS = ("dataset", "splits", "class_split", "split_seed", "num_train_classes",
                "num_val_classes", "num_val_alphabets")
# Training fields of the config given, which no ensemble used: left out of its results.
TRAINING_FIELDS = ("num_steps", "meta_batch", "train_way", "train_tasks", "train_affine",
                   "meta_lr", "meta_optimizer", "steps_per_call", "log_every",
                   "checkpoint_every", "seed", "inner_steps", "inner_lr")


def _as_config_value(value):
  if isinstance(value, dict):
    return ml_collections.ConfigDict({k: _as_config_value(v) for k, v in value.items()})
  if isinstance(value, list):
    return tuple(_as_config_value(v) for v in value)
  return value


def member_config(config, workdir: str):
  """`config` (the tasks) with the learner fields of the run in `workdir`."""
  saved = run_dir.saved_config(workdir)
  if saved is None or "algorithm" not in saved:
    raise ConfigError(f"{workdir} holds no meta-learning run (no config.json or results.json "
                      "of experiments.meta_train): an ensemble's members are such runs.")
  # The same classes split (else a member may have trained on the classes scored: MAML's
  # split trains on evaluation alphabets, another seed on the validation alphabets); a
  # learner with an N-way head answers N-way tasks only, ProtoNets any number of ways.
  fields = SPLIT_FIELDS + (() if saved["algorithm"] == "protonet" else ("way",))
  for field in fields:
    have, want = saved.get(field, run_dir.FIELD_DEFAULTS.get(field)), config.get(field)
    if _as_config_value(have) != _as_config_value(want):
      raise ConfigError(f"{workdir} was trained with {field}={have!r}; the tasks are "
                        f"{field}={want!r}: its training classes are not the ones held out.")
  c = ml_collections.ConfigDict(config.to_dict())
  for field in LEARNER_FIELDS:
    if field in saved:
      c[field] = _as_config_value(saved[field])
  return c


def accuracies(probs, labels):
  """(the ensemble's accuracy per task, each member's: (members, tasks)) from `probs`
  (members, tasks, queries, ways): the class of the average probability, not a vote."""
  right = lambda p: jnp.mean(jnp.argmax(p, -1) == labels, axis=-1)
  return right(probs.mean(0)), jax.vmap(right)(probs)


def evaluate_ensemble(config, workdirs, outdir: str) -> dict:
  """Scores the ensemble of the runs in `workdirs` on the tasks of `config`; writes
  `outdir/results.json`: the ensemble's accuracy per task and summary (as `meta_eval`'s),
  and each member's accuracy per task on the same tasks."""
  affine = config.test_affine.to_dict()
  views = affine.pop("views")
  if views < 1:
    raise ConfigError(f"test_affine.views={views} must be >= 1.")
  if views > 1:
    tasks.check_affine("test_affine", **affine)
  if len(workdirs) * views < 2:
    raise ConfigError(f"An ensemble needs at least 2 runs or test_affine.views >= 2; got "
                      f"{list(workdirs)} and views={views}.")
  if config.dataset == "sinusoid":
    raise ConfigError("Ensembles average class probabilities: classification runs only "
                      f"(dataset={config.dataset!r}).")
  mesh = sharding.make_mesh(config.num_devices)
  members = []
  for workdir in workdirs:
    c = member_config(config, workdir)
    train.check_same_model(c, workdir)
    saved, _ = train.load_run(workdir)
    members.append((c, train.make_learner(c), sharding.replicate(saved, mesh)))
  data = train.make_task_data(config)
  sampler, provenance = data.test_sampler, data.provenance
  test_data = sharding.replicate(data.test, mesh)

  def probabilities(c, learner, saved, task):
    bn, params = saved.get("batch_stats", {}), saved["meta_params"]["params"]
    if learner.algorithm not in NO_INNER_LOOP:
      params, _ = learner.adapt(saved["meta_params"], bn, task.support_x, task.support_y,
                                c.test_inner_steps, lr=c.test_inner_lr or None,
                                backtrack=c.test_backtrack)
    return jax.nn.softmax(learner.test_logits(params, bn, task.support_x, task.support_y,
                                              task.query_x))

  def view(episodes, key, v):  # the task as drawn, or every image warped
    if v == 0:
      return episodes
    keys = jax.random.split(jax.random.fold_in(key, v))
    return tasks.warp_episodes(keys, episodes, **affine)

  def score(episodes, key):
    probs = jnp.stack([jnp.stack([learner.over_tasks(
        lambda task, c=c, learner=learner, saved=saved: probabilities(c, learner, saved, task),
        view(episodes, key, v)) for v in range(views)]) for c, learner, saved in members])
    # (members, views, tasks, queries, ways); each member alone: the task as drawn
    ensemble, _ = accuracies(probs.reshape((-1,) + probs.shape[2:]), episodes.query_y)
    _, each = accuracies(probs[:, 0], episodes.query_y)
    return ensemble, each.T  # tasks first, as the chunks are stacked

  ensemble, each = tasks.over_eval_tasks(config, test_data, sampler, score, mesh)
  config = ml_collections.ConfigDict({k: v for k, v in config.to_dict().items()
                                      if k not in TRAINING_FIELDS})
  # One score per task: each member adapts with its own test_inner_steps.
  config.test_inner_steps, config.eval_steps, config.ensemble = 0, (0,), tuple(workdirs)
  config.algorithm = "ensemble"  # each member's own is in its folder
  metrics = train.summarize(config, members[0][1], ensemble[:, None])
  metrics.update(
      data=provenance, members=list(workdirs),
      test_inner_steps={w: c.test_inner_steps for w, (c, _, _) in zip(workdirs, members)},
      member_test_accuracy_per_task={w: [round(float(v), 6) for v in scores]
                                     for w, scores in zip(workdirs, each.T)})
  os.makedirs(outdir, exist_ok=True)
  write_results(outdir, config, metrics, "meta", evaluated_by="experiments.meta_eval",
                checkpoint=workdirs[0])
  return metrics
