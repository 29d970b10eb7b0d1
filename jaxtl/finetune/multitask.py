"""Multi-task learning: min_theta sum_i w_i L_i(theta, D_i) with a shared trunk and one head
per task, trained on all tasks at once (`train_and_evaluate_multitask`).

The baseline transfer is compared with: transfer sees the source only before the target,
multi-task sees both together. Task 0 is the one reported (`test_accuracy`,
`val_accuracy`); every task's test accuracy is reported too.
"""
import functools

import jax
import jax.numpy as jnp
import optax
from absl import logging

from jaxtl import loop, partition, workdir as run_dir
from jaxtl.errors import ConfigError
from jaxtl.finetune import optim
from jaxtl.finetune.trainer import BATCH_NORM_MODES, forward, make_eval_fn
from jaxtl.metrics import write_results
from jaxtl.models import build_model

HEAD = (("^head/", True), (".*", False))


def multitask_loss(model_fns, trunk, heads, batch_stats, batches, weights, bn_train=True):
  """sum_i w_i * mean cross-entropy of task i, its head on the shared trunk.
  Returns (loss, (per-task losses, batch_stats))."""
  losses = []
  for model, head, (x, y) in zip(model_fns, heads, batches):
    params = partition.merge(trunk, head)
    logits, batch_stats = forward(model, params, batch_stats, x, train=bn_train)
    losses.append(optax.softmax_cross_entropy_with_integer_labels(logits, y).mean())
  losses = jnp.stack(losses)
  return jnp.sum(jnp.asarray(weights) * losses), (losses, batch_stats)


def train_and_evaluate_multitask(config, workdir: str, data) -> dict:
  """`data`: list of (train, val, test) per task, task 0 first; `config.task_weights`
  (empty: all 1). Same config fields as the fine-tuning trainer, with the same meaning
  (model, batch_norm, optimizer, learning_rate, weight_decay, momentum, steps); it trains
  every parameter, so `strategy` must be "full"."""
  if config.strategy != "full":
    raise ConfigError(f"Multi-task learning trains every parameter; strategy="
                      f"{config.strategy!r} is for fine-tuning (valid here: 'full').")
  if config.batch_norm not in BATCH_NORM_MODES:
    raise ConfigError(f"Unknown batch_norm {config.batch_norm!r}; valid: {BATCH_NORM_MODES}.")
  weights = tuple(config.task_weights) or (1.0,) * len(data)
  if len(weights) != len(data):
    raise ConfigError(f"{len(weights)} task_weights for {len(data)} tasks.")
  models = [build_model(config.model, num_classes=max(tr.num_classes, te.num_classes),
                        **dict(config.model_kwargs)) for tr, _, te in data]
  key = jax.random.PRNGKey(config.seed)
  trunk, heads, batch_stats = None, [], {}
  for i, (model, (train, _, _)) in enumerate(zip(models, data)):
    v = model.init(jax.random.fold_in(key, i), jnp.asarray(train.images[:1]), train=False)
    labels = partition.label_params(v["params"], HEAD)
    head, body = partition.split(v["params"], labels, bool)
    heads.append(head)
    if trunk is None:
      trunk, batch_stats = body, v.get("batch_stats", {})
  tx = optim.make(config.optimizer, config.learning_rate, config.weight_decay,
                  config.momentum if config.optimizer == "sgd" else 0.0)
  state = dict(step=jnp.zeros((), jnp.int32), params=(trunk, heads), batch_stats=batch_stats,
               opt_state=tx.init((trunk, heads)))
  run_dir.prepare(config, workdir)  # the first write: the config has been checked above
  arrays = [(jnp.asarray(tr.images), jnp.asarray(tr.labels)) for tr, _, _ in data]
  sizes = [len(tr) for tr, _, _ in data]
  batch = config.batch_size

  @functools.partial(jax.jit, donate_argnums=0)
  def step(state, arrays, key):
    k = jax.random.fold_in(key, state["step"])
    batches = []
    for i, ((x, y), n) in enumerate(zip(arrays, sizes)):
      idx = jax.random.choice(jax.random.fold_in(k, i), n, (min(batch, n),), replace=False)
      batches.append((x[idx], y[idx]))

    def loss(params):
      return multitask_loss(models, params[0], params[1], state["batch_stats"], batches,
                            weights, config.batch_norm == "train")

    (total, (losses, bs)), grads = jax.value_and_grad(loss, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    return dict(step=state["step"] + 1, params=optax.apply_updates(state["params"], updates),
                batch_stats=bs, opt_state=opt_state), total

  data_key = jax.random.fold_in(key, 10_000)

  def train_step(state, _):
    state, total = step(state, arrays, data_key)
    return state, total, {"train_loss": total}

  trained = loop.run(workdir, state, train_step, num_steps=config.num_steps,
                     log_every=config.log_every, checkpoint_every=config.checkpoint_every,
                     hint="Lower the learning rate.")
  state, step_num, segments = trained.state, trained.step, trained.segments
  trunk, heads = state["params"]
  metrics = {"train_seconds": run_dir.total_seconds(segments), "train_segments": segments,
             "steps": step_num, "task_weights": list(weights)}
  for i, (model, head, (_, val, test)) in enumerate(zip(models, heads, data)):
    evaluate = make_eval_fn(model, config.eval_batch_size)
    params = partition.merge(trunk, head)
    metrics[f"task{i}_test_accuracy"] = evaluate(params, state["batch_stats"], test)["accuracy"]
    if i == 0:
      metrics["test_accuracy"] = metrics["task0_test_accuracy"]
      metrics["val_accuracy"] = (evaluate(params, state["batch_stats"], val)["accuracy"]
                                 if len(val) else float("nan"))
      metrics["trainable_params"] = partition.count(params)
  trained.logger.close()
  write_results(workdir, config, metrics, "finetune")
  logging.info("%s: multi-task, task 0 test accuracy %.4f", workdir, metrics["test_accuracy"])
  return metrics
