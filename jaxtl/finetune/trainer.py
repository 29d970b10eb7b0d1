"""Pre-training and fine-tuning: `train_and_evaluate(config, workdir)`.

Pre-training is fine-tuning with `strategy="full"` and no `init_from`, supervised or
with a self-supervised `objective` (`jaxtl.objectives`: the step's inputs and loss). One jitted step
differentiates only the trainable leaves of the current phase (frozen leaves are
closed over, so XLA drops their backward pass), and the optimizer (`jaxtl.finetune.optim`, the
same factory as the grid's) only ever sees trainable leaves: frozen leaves get no
optimizer state and no weight decay, and stay bit-identical.
"""
import dataclasses
import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from jaxtl import checkpoint, loop, objectives, partition, sharding, state_dict
from jaxtl import workdir as run_dir
from jaxtl.errors import ConfigError
from jaxtl.finetune import optim, prefix, strategies
from jaxtl.finetune.data import make_splits
from jaxtl.metrics import write_results
from jaxtl.models import batch_statistics, block_names, build_model
from jaxtl.models.torchvision import describe_state_dict, variables_from_state_dict

BATCH_NORM_MODES = ("train", "frozen")


def make_optimizer(config, lr_scale_labels, steps_per_epoch: int = 1):
  """The optimiser of `config` (`jaxtl.finetune.optim`: one factory for every training path) with
  the learning-rate scale of each trainable leaf (`lr_scale_labels`)."""
  scales = jax.tree_util.tree_map(float, lr_scale_labels)
  return optim.from_config(config, scales, steps_per_epoch)


def forward(model, params, batch_stats, x, train: bool, start: int = 0):
  """Forward pass; returns (logits, new batch_stats). `train` = use batch statistics.
  `start` > 0: `x` is the input of block `start` (a frozen prefix computed once)."""
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  kwargs = {"start": start} if start else {}
  if train and batch_stats:
    logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"], **kwargs)
    return logits, updates["batch_stats"]
  return model.apply(variables, x, train=train, **kwargs), batch_stats


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  return max(num_examples // batch_size, 1)


@functools.partial(jax.jit, static_argnums=2)
def epoch_order(key, epoch, num_examples: int) -> jax.Array:
  """The order of the training examples in `epoch`, drawn from (key, epoch): a resumed run
  sees the batches an uninterrupted one would. Drawn once per epoch, not per step: it
  sorts the whole training set (about 10 ms for MNIST's 60,000 on a CPU core)."""
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)


def make_train_step(model, tx, labels, config, batch_size: int, num_examples: int, mesh=None,
                    objective: Optional[objectives.Objective] = None, key=None, start: int = 0):
  """Returns step(state, anchor, images, labels, order) -> (state, loss), `order` being
  `epoch_order` of the step's epoch; donates the state. With a `mesh`
  (`jaxtl.sharding`) the batch is split over its devices. `objective` (default:
  cross-entropy on the labels) makes the step's inputs from fold_in(`key`, step).
  `start` > 0: `images` are the output of the frozen blocks before block `start`."""
  trainable_label = lambda label: label is not None
  per_epoch = steps_per_epoch(num_examples, batch_size)
  bn_train = config.batch_norm == "train"
  l2sp = config.strategy == "l2sp"
  objective = objective or objectives.make("supervised", {}, 0, ())
  key = jax.random.PRNGKey(0) if key is None else key

  def loss_fn(trainable, frozen, batch_stats, anchor, x, y):
    params = partition.merge(trainable, frozen)
    outputs, batch_stats = forward(model, params, batch_stats, x, bn_train, start)
    loss = objective.loss(outputs, y)
    if l2sp:
      loss += strategies.l2sp_penalty(trainable, anchor, config.l2sp_alpha, config.l2sp_beta)
    return loss, batch_stats

  def step(state, anchor, images, targets, order):
    # The batch is gathered on the device from the epoch's order.
    pos = state["step"] % per_epoch
    idx = jax.lax.dynamic_slice_in_dim(order, pos * batch_size, batch_size)
    x, y = images[idx], targets[idx]
    if mesh is not None:
      x, y = sharding.shard_batch((x, y), mesh)
    x, y = objective.prepare(jax.random.fold_in(key, state["step"]), x, y)
    trainable, frozen = partition.split(state["params"], labels, trainable_label)
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        trainable, frozen, state["batch_stats"], anchor, x, y)
    updates, opt_state = tx.update(grads, state["opt_state"], trainable)
    trainable = optax.apply_updates(trainable, updates)
    new_state = dict(step=state["step"] + 1, params=partition.merge(trainable, frozen),
                     batch_stats=batch_stats, opt_state=opt_state)
    return new_state, loss

  replicated = {} if mesh is None else {"out_shardings": sharding.replicated(mesh)}
  return jax.jit(step, donate_argnums=0, **replicated)


def make_eval_fn(model, batch_size: int = 500):
  """Returns evaluate(params, bn, dataset, start=0) -> {"accuracy", "loss"} with running BN
  stats; `start` > 0: `dataset.images` are the input of block `start` (`prefix_features`)."""
  @functools.partial(jax.jit, static_argnums=5)
  def batch_stats(params, bn, x, y, mask, start):
    logits, _ = forward(model, params, bn, x, train=False, start=start)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    correct = (jnp.argmax(logits, -1) == y)
    return jnp.sum(correct * mask), jnp.sum(loss * mask)

  def evaluate(params, bn, dataset, start: int = 0):
    n = len(dataset)
    correct = total_loss = 0.0
    for first in range(0, n, batch_size):
      x = dataset.images[first:first + batch_size]
      y = dataset.labels[first:first + batch_size]
      pad = batch_size - len(y) if n > batch_size else 0  # one shape -> one compile
      mask = np.concatenate([np.ones(len(y)), np.zeros(pad)]).astype(np.float32)
      x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
      y = np.concatenate([y, np.zeros(pad, y.dtype)])
      c, l = batch_stats(params, bn, x, y, mask, start)
      correct, total_loss = correct + float(c), total_loss + float(l)
    return {"accuracy": correct / max(n, 1), "loss": total_loss / max(n, 1)}

  return evaluate


def _variables(params, batch_stats) -> dict:
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


PREFIX_CACHE_BYTES = 2 << 30  # a frozen prefix's output is cached up to this size
_SAID = set()  # why frozen blocks were not cached, each said once per process


def _not_cached_because(config, objective, model) -> str:
  """Why frozen leading blocks would not map an image to the same output every step
  ("" if they would)."""
  if not config.get("cache_frozen_prefix", True):
    return "cache_frozen_prefix=False"
  if config.batch_norm != "frozen":
    return f"batch_norm={config.batch_norm!r} (their statistics move with each batch)"
  if objective.name != "supervised":
    return f"the {objective.name} objective makes new inputs at every step"
  if dict(config.objective_kwargs).get("augment"):
    return "the inputs are augmented at every step"
  if not prefix.sliceable(model):
    return f"{type(model).__name__} runs no slice of its blocks (start / stop)"
  return ""


def frozen_prefix(model, variables, labels, config, objective, images) -> int:
  """How many leading blocks the phase with parameter `labels` can run once on the
  training images instead of at every step (0: none). Exact when those blocks are frozen
  and map an image to the same output every step: batch norm frozen (running
  statistics), no augmentation of the inputs, a model that runs a slice of its blocks
  (`start` / `stop`), and the output fits in `PREFIX_CACHE_BYTES`. Otherwise the blocks
  run at every step, and the first time a reason applies it is logged."""
  trained = {path.split("/")[0] for path, label in partition.flatten(labels).items()
             if label is not None}
  names = block_names(model, variables["params"])
  start = next((i for i, b in enumerate(names) if b in trained), 0)
  why = _not_cached_because(config, objective, model) if start else ""
  if why:
    if why not in _SAID:
      _SAID.add(why)
      logging.info("The frozen blocks %s run at every step, not once: %s.", names[:start], why)
    return 0
  if start and prefix_bytes(model, variables, images, start) > PREFIX_CACHE_BYTES:
    logging.info("The frozen blocks %s output %.1f GB on the training set: run at every "
                 "step instead of cached.", names[:start],
                 prefix_bytes(model, variables, images, start) / 1e9)
    return 0
  return start


def prefix_bytes(model, variables, images, stop: int) -> int:
  """The size of blocks [0, stop)'s output on `images`, from shapes alone."""
  out = jax.eval_shape(lambda x: model.apply(variables, x, train=False, stop=stop),
                       jax.ShapeDtypeStruct(images.shape, images.dtype))
  return out.size * out.dtype.itemsize


def load_init(variables, config):
  """`variables` with `config.init_from`'s arrays loaded (checkpoint.load_pretrained); a
  torchvision / timm weights file that does not fit says what it holds."""
  if not state_dict.is_weights_file(config.init_from):
    return checkpoint.load_pretrained(variables, checkpoint.load_variables(config.init_from),
                                      config.reinit)
  weights = state_dict.read_state_dict(config.init_from)
  try:
    return checkpoint.load_pretrained(variables, variables_from_state_dict(weights),
                                      config.reinit, strict=True)
  except ConfigError as e:
    raise ConfigError(f"{config.init_from} holds {describe_state_dict(weights)}, not "
                      f"{config.model} with {dict(config.model_kwargs)}. {e}") from e


def _class_counts(labels) -> str:
  """The training examples per class, for the log: each count for a few classes, else
  their range (a 3,328-way pre-training would print 3,328 numbers)."""
  counts = np.bincount(labels)
  if len(counts) <= 20:
    return ", ".join(f"{int(n)}" for n in counts)
  return f"{counts.min()} to {counts.max()} per class"


def train_and_evaluate(config, workdir: str,
                       step_callback: Optional[Callable[[int], None]] = None,
                       data=None, model=None) -> dict:
  """Trains per `config` (see experiments/configs/finetune.py), resuming from the last
  checkpoint in `workdir`; writes `workdir/results.json` and returns its metrics.

  `data`: optional (train, val, test) ImageDatasets replacing the config's dataset fields
  (the shift benchmarks build their own); labels must lie in 0..num_classes-1.
  `model`: optional Flax module replacing `config.model` (any module called as
  `model(x, train=...)` that returns logits; its blocks: `jaxtl.models.block_names`).
  """
  if config.batch_norm not in BATCH_NORM_MODES:
    raise ConfigError(f"Unknown batch_norm {config.batch_norm!r}; valid: {BATCH_NORM_MODES}.")
  run_dir.check_at_least(config, 1, ("batch_size", "log_every", "checkpoint_every",
                                     "eval_batch_size"))
  # num_steps 0: the initialisation itself, evaluated and saved (with `clean_batch_stats`,
  # a random network normalised as a pre-trained one is: the pre-training study's floor).
  run_dir.check_at_least(config, 0, ("num_steps", "eval_every", "num_devices"))
  train, val, test = data if data is not None else make_splits(config)
  logging.info("data: %d training, %d validation and %d test examples of %s, %d classes "
               "(train: %s)", len(train), len(val), len(test), train.name,
               max(train.num_classes, test.num_classes), _class_counts(train.labels))
  num_classes = (len(config.classes) if config.classes else
                 max(train.num_classes, test.num_classes))
  objective = objectives.make(config.objective, config.objective_kwargs, num_classes,
                              train.images.shape[1:])
  if model is None:  # its head is the objective's output layer
    model = build_model(config.model, num_classes=objective.num_outputs,
                        **dict(config.model_kwargs))
  model = objectives.network_for(model, objective)
  key = jax.random.PRNGKey(config.seed)
  init_key, data_key = jax.random.split(key)
  # The objective's inputs (augmentations, masks): in training, and a fixed draw to evaluate.
  input_key, eval_key = jax.random.fold_in(key, 2), jax.random.fold_in(key, 3)
  variables = model.init(init_key, jnp.asarray(train.images[:1]), train=False)
  phase_list = strategies.phases(config, block_names(model, variables["params"]))
  anchor = {}
  if config.init_from:
    variables, report = load_init(variables, config)
    logging.info("init_from %s: %s", config.init_from, checkpoint.format_report(report))
    if config.strategy == "l2sp":  # pull towards the pretrained values of the loaded leaves
      loaded = [p.split("/", 1)[1] for p in report["loaded"] if p.startswith("params/")]
      anchor = jax.tree_util.tree_map(jnp.array, partition.select(variables["params"], loaded))
  elif config.strategy != "full":
    logging.warning("strategy=%s without init_from: fine-tuning a randomly initialised model.",
                    config.strategy)
  params, batch_stats = variables["params"], variables.get("batch_stats", {})

  batch_size = min(config.batch_size, len(train))
  mesh = sharding.make_mesh(config.num_devices, batch_size, "batch_size")
  images, targets, anchor = sharding.replicate((train.images, train.labels, anchor), mesh)
  if objective.name == "supervised":
    evaluate_on = make_eval_fn(model, config.eval_batch_size)
  else:  # the objective's own metrics, on a fixed draw of its inputs
    evaluate_on = objectives.make_eval_fn(
        lambda params, bn, x: forward(model, params, bn, x, train=False)[0], objective,
        config.eval_batch_size, eval_key)

  def evaluate(params, bn, dataset):
    """Scores on `dataset`; under a phase's frozen prefix, on its output, computed once per
    phase and set (those blocks do not change within the phase)."""
    start, saved, variables = current["prefix"], current["eval_inputs"], _variables(params, bn)
    if start and id(dataset) not in saved:  # None: too large to keep
      too_large = prefix_bytes(model, variables, dataset.images, start) > PREFIX_CACHE_BYTES
      saved[id(dataset)] = None if too_large else dataclasses.replace(
          dataset, images=np.asarray(prefix.prefix_features(model, variables, dataset.images,
                                                            start)))
    if not start or saved[id(dataset)] is None:
      return evaluate_on(params, bn, dataset)
    return evaluate_on(params, bn, saved[id(dataset)], start)

  def start_phase(index, params, batch_stats, step):
    """A fresh state and step function for phase `index`: its partition and optimizer."""
    phase = phase_list[index]
    labels = partition.label_params(params, phase.table)
    trainable_labels, _ = partition.split(labels, labels, lambda l: l is not None)
    if not trainable_labels:
      raise ConfigError(f"Phase {phase.name!r} of strategy {config.strategy!r} trains nothing.")
    logging.info("phase %s (%d steps), parameter partition:\n%s", phase.name, phase.num_steps,
                 partition.describe(params, labels))
    tx = make_optimizer(config, trainable_labels, max(len(train) // batch_size, 1))
    trainable, _ = partition.split(params, labels, lambda l: l is not None)
    state = dict(step=jnp.asarray(step, jnp.int32), params=params, batch_stats=batch_stats,
                 opt_state=tx.init(trainable))
    # Frozen, deterministic leading blocks run once on the training set, not every step:
    # from the parameters of the phase's first executed step (a resumed run's included).
    start = frozen_prefix(model, _variables(params, batch_stats), labels, config, objective,
                          train.images)
    current["prefix"], current["inputs"] = start, None if start else images
    current["eval_inputs"] = {}  # id(dataset) -> its prefix output, for `evaluate`
    if start:
      logging.info("phase %s: blocks %s are frozen; their output on the %d training images "
                   "is computed once.", phase.name,
                   list(block_names(model, params)[:start]), len(train))
    return (sharding.replicate(state, mesh),
            make_train_step(model, tx, labels, config, batch_size, len(train), mesh,
                            objective, input_key, start))

  current = {}  # the phase in use: index, step function

  def use_phase(index, state):
    """State and step function of phase `index`, from `state`'s parameters."""
    state, current["step_fn"] = start_phase(index, state["params"], state["batch_stats"],
                                            int(state["step"]))
    current["index"] = index
    return state

  state = use_phase(0, dict(step=0, params=params, batch_stats=batch_stats))  # checks it
  run_dir.prepare(config, workdir)  # the first write: the config has been checked above
  # A saved state belongs to the phase of its last executed step, `saved - 1`.
  phase_of = lambda saved: strategies.phase_at(phase_list, max(saved - 1, 0))[0]
  template = lambda saved: use_phase(phase_of(saved), dict(step=saved, params=params,
                                                           batch_stats=batch_stats))
  per_epoch, order_of_epoch = steps_per_epoch(len(train), batch_size), {}

  def train_step(state, step):
    index, _, _ = strategies.phase_at(phase_list, step)
    if index != current["index"]:  # next phase: same parameters, new partition and optimizer
      state = use_phase(index, state)
    epoch = step // per_epoch
    if epoch not in order_of_epoch:
      order_of_epoch.clear()
      order_of_epoch[epoch] = sharding.replicate(epoch_order(data_key, epoch, len(train)), mesh)
    if current["inputs"] is None:  # the phase's frozen prefix, from the state's parameters
      current["inputs"] = sharding.replicate(prefix.prefix_features(
          model, _variables(state["params"], state["batch_stats"]), train.images,
          current["prefix"]), mesh)
    state, loss = current["step_fn"](state, anchor, current["inputs"], targets,
                                     order_of_epoch[epoch])
    return state, loss, {"train_loss": loss}

  def validate(state, step):
    if config.eval_every and step % config.eval_every == 0 and len(val):
      scores = evaluate(state["params"], state["batch_stats"], val)
      return {f"val_{k}": v for k, v in scores.items() if k != "loss"}
    return {}

  trained = loop.run(workdir, state, train_step, num_steps=config.num_steps,
                     log_every=config.log_every, checkpoint_every=config.checkpoint_every,
                     hint="Lower the learning rate.", template=template, log_extra=validate,
                     step_callback=step_callback)
  state, step, segments, logger = trained.state, trained.step, trained.segments, trained.logger
  params, batch_stats = state["params"], state["batch_stats"]
  metrics = {f"test_{k}": v for k, v in evaluate(params, batch_stats, test).items()}
  if len(val):
    metrics.update({f"val_{k}": v for k, v in evaluate(params, batch_stats, val).items()})
  last_labels = partition.label_params(params, phase_list[-1].table)
  trainable, frozen = partition.split(params, last_labels, lambda l: l is not None)
  metrics.update(steps=step, train_seconds=run_dir.total_seconds(segments),
                 train_segments=segments,
                 trainable_params=partition.count(trainable), frozen_params=partition.count(frozen),
                 num_train=len(train), num_val=len(val), num_test=len(test),
                 input_shape=list(train.images.shape[1:]),
                 data={"train": train.provenance(), "test": test.provenance()})
  logger.write(step, {k: v for k, v in metrics.items() if k.startswith(("test_", "val_"))},
               progress=False)
  logger.close()
  if config.clean_batch_stats and batch_stats:
    # Running averages of masked or augmented inputs would normalise transfer's clean
    # images wrongly: the statistics of clean training images replace them.
    clean = jnp.asarray(train.images[:config.clean_batch_stats])
    batch_stats = batch_statistics(model, params, batch_stats, clean)
    metrics["clean_batch_stats"] = len(clean)
  checkpoint.save_variables(workdir, {"params": params, "batch_stats": batch_stats}
                            if batch_stats else {"params": params})
  write_results(workdir, config, metrics, "finetune",
                inputs=[d.provenance() for d in (train, val, test)])
  logging.info("%s: %s", workdir, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                                            if k.startswith("test_")))
  return metrics
