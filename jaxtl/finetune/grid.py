"""A fine-tuning grid as one compiled program: `train_grid(...)` and `evaluate_grid(...)`.

The learning rate, weight decay and seed of every configuration are traced inputs, so one
compilation serves the whole grid of a strategy; the strategy (which leaves train, in
which phases) is static, so frozen leaves are closed over and XLA drops their backward
pass. Configurations run `jax.lax.map(..., batch_size=chunk)`: `chunk` of them vmapped
at a time (more than 1 pays on accelerators; on CPU a vmapped convolution with a
different kernel per configuration is slower than one after the other, measured in
BUILD_NOTES), and every one trains as a `lax.scan` over its steps.

Per configuration: the optimiser of `jaxtl.finetune.optim` (the trainer's factory, so `adam`'s
weight decay is L2 added to the gradient as torch's `Adam(weight_decay=)` in the surgical
fine-tuning code of Lee et al. 2023), on the trainable leaves only; the seed draws the
re-initialised leaves (`reinit`) and the order of the examples. Each phase of a strategy
(LP-FT: head, then everything) starts a fresh optimizer, as a new `torch.optim.Adam` would.

Frozen prefix: with batch norm frozen, the blocks before the first one any phase trains
map each image to the same activations at every step, so `train_grid` and
`evaluate_grid` compute them once per call (`prefix_features`) and run the rest of the
network on them (models that take `start` / `stop`, as jaxtl's; other modules run whole).

Batch norm (`batch_norm`):
  * `frozen` (the paper's default, `train_mode=eval`): running statistics normalise and
    are never updated. A strategy changes exactly its trainable parameters.
  * `train` (the paper's ablation, PyTorch's `model.train()`): batch statistics normalise
    and the running statistics of every layer are updated, frozen blocks included.
"""
import dataclasses
import functools
import re
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtl import partition
from jaxtl.errors import ConfigError
from jaxtl.finetune import auto, optim
from jaxtl.finetune.prefix import prefix_features, sliceable  # pylint: disable=unused-import
from jaxtl.finetune.trainer import BATCH_NORM_MODES, forward
from jaxtl.models import block_names


@dataclasses.dataclass(frozen=True)
class GridSpec:
  """The static part of a grid: what trains, how long, how batch norm behaves."""
  phases: tuple           # strategies.Phase: (name, pattern table of lr scales, num_steps)
  batch_size: int
  batch_norm: str = "frozen"
  reinit: tuple = ()      # regexes of leaves drawn afresh from each configuration's seed
  auto: str = ""          # "", "auto_rgn" or "auto_snr" (jaxtl.finetune.auto)
  auto_period: int = 0    # steps between measurements (0: an epoch)
  auto_measure_steps: int = 4
  snr_threshold: float = 0.1
  chunk: int = 1          # configurations vmapped together
  optimizer: str = "adam"  # jaxtl.finetune.optim
  momentum: float = 0.0   # sgd only
  cache_frozen_prefix: bool = True  # False: the frozen leading blocks run at every step

  def __post_init__(self):
    if self.batch_norm not in BATCH_NORM_MODES:
      raise ConfigError(f"Unknown batch_norm {self.batch_norm!r}; valid: {BATCH_NORM_MODES}.")
    if self.auto not in ("", "auto_rgn", "auto_snr"):
      raise ConfigError(f"Unknown auto {self.auto!r}; valid: '', 'auto_rgn', 'auto_snr'.")
    if self.batch_size < 1 or self.chunk < 1:
      raise ConfigError(f"batch_size={self.batch_size} and chunk={self.chunk} must be >= 1.")


def spec_from_config(config, block_names, reinit=(), chunk: int = 1) -> GridSpec:
  """The GridSpec of a fine-tuning config; what the grid cannot honour is an error, not a
  silent change of method."""
  if config.strategy == "l2sp":
    raise ConfigError("strategy 'l2sp' is not available in a grid (its penalty needs the "
                      "pre-trained anchor); run it with jaxtl.finetune.trainer.")
  if config.objective != "supervised":
    raise ConfigError(f"A grid fine-tunes with labels; objective={config.objective!r} is "
                      "for jaxtl.finetune.trainer.")
  from jaxtl.finetune import strategies  # pylint: disable=import-outside-toplevel
  return GridSpec(tuple(strategies.phases(config, block_names)), config.batch_size,
                  config.batch_norm, tuple(reinit),
                  config.strategy if config.strategy in ("auto_rgn", "auto_snr") else "",
                  config.auto_period, config.auto_measure_steps, config.snr_threshold, chunk,
                  config.optimizer, config.momentum if config.optimizer == "sgd" else 0.0,
                  config.get("cache_frozen_prefix", True))


def _optimizer(spec, learning_rate, weight_decay, scales, steps_per_epoch):
  tx = optim.make(spec.optimizer, learning_rate, weight_decay, spec.momentum, scales)
  return auto.wrap(tx, spec.auto, spec.auto_period or steps_per_epoch,
                   spec.auto_measure_steps, spec.snr_threshold)


def first_trained_block(model, variables, spec: GridSpec) -> int:
  """Index (in `model.block_names()`) of the first block that any phase trains or
  `reinit` redraws: the blocks before it are a frozen prefix."""
  names = list(block_names(model, variables["params"]))
  touched = set()
  for phase in spec.phases:
    labels = partition.flatten(partition.label_params(variables["params"], phase.table))
    touched |= {p.split("/", 1)[0] for p, l in labels.items() if l is not None}
  for path in partition.flatten(variables["params"]):
    if any(re.search(r, path) for r in spec.reinit):
      touched.add(path.split("/", 1)[0])
  return min(names.index(b) for b in touched)


def prefix_start(model, variables, spec: GridSpec) -> int:
  """How many leading blocks to compute once (0: none). Only with batch norm frozen
  (in `train` mode a frozen block's output depends on the batch) and a model that runs
  a slice of its blocks (`start` / `stop`)."""
  if not spec.cache_frozen_prefix or spec.batch_norm != "frozen" or not sliceable(model):
    return 0
  return first_trained_block(model, variables, spec)


def redraw(model, variables, reinit, key, example):
  """`variables` with the leaves matching `reinit` drawn from `key`."""
  if not reinit:
    return variables
  drawn = partition.flatten(model.init(key, example, train=False))
  flat = partition.flatten(variables)
  pick = lambda path: any(re.search(r, path.split("/", 1)[1]) for r in reinit)
  return partition.unflatten({p: drawn[p] if pick(p) else v for p, v in flat.items()})


def make_train_fn(model, spec: GridSpec, num_train: int, start: int = 0):
  """Returns train(variables, inputs, labels, example, learning_rate, weight_decay, seed,
  index) -> variables for ONE configuration; `index` (num_train,) picks its examples from
  `inputs` (images, or the input of block `start`); `example`: one image (for `reinit`)."""
  batch_size = min(spec.batch_size, num_train)
  per_epoch = max(num_train // batch_size, 1)
  bn_train = spec.batch_norm == "train"

  def train(variables, inputs, labels, example, learning_rate, weight_decay, seed, index):
    key = jax.random.PRNGKey(seed)
    init_key, order_key = jax.random.split(key)
    variables = redraw(model, variables, spec.reinit, init_key, example)
    params, stats = variables["params"], variables.get("batch_stats", {})
    step = jnp.zeros((), jnp.int32)
    for phase in spec.phases:
      labels_tree = partition.label_params(params, phase.table)
      trainable, frozen = partition.split(params, labels_tree, lambda l: l is not None)
      scales, _ = partition.split(labels_tree, labels_tree, lambda l: l is not None)
      scales = jax.tree_util.tree_map(jnp.float32, scales)
      tx = _optimizer(spec, learning_rate, weight_decay, scales, per_epoch)

      def loss_fn(trainable, frozen, stats, x, y):
        logits, new_stats = forward(model, partition.merge(trainable, frozen), stats, x,
                                    bn_train, start)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, new_stats

      def one_step(carry, _):
        trainable, stats, opt_state, step = carry
        order = jax.random.permutation(jax.random.fold_in(order_key, step // per_epoch),
                                       num_train)
        pick = jax.lax.dynamic_slice_in_dim(order, (step % per_epoch) * batch_size,
                                            batch_size)
        x, y = inputs[index[pick]], labels[index[pick]]
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, frozen, stats, x, y)
        updates, opt_state = tx.update(grads, opt_state, trainable)
        return (optax.apply_updates(trainable, updates), stats, opt_state, step + 1), loss

      (trainable, stats, _, step), _ = jax.lax.scan(
          one_step, (trainable, stats, tx.init(trainable), step), length=phase.num_steps)
      params = partition.merge(trainable, frozen)
    return {"params": params, "batch_stats": stats} if stats else {"params": params}

  return train


@functools.lru_cache(maxsize=None)
def _compiled_grid(model, spec: GridSpec, num_train: int, start: int):
  """One jitted grid per (model, strategy, num_train, prefix): a study of many shifts with
  the same shapes compiles each strategy once, not once per shift."""
  train = make_train_fn(model, spec, num_train, start)

  @jax.jit
  def run(variables, inputs, labels, example, lrs, wds, seeds, index):
    def per_seed(seed_index):
      seed, rows = seed_index
      one = lambda h: train(variables, inputs, labels, example, h[0], h[1], seed, rows)
      return jax.lax.map(one, (lrs, wds), batch_size=spec.chunk)
    return jax.lax.map(per_seed, (seeds, index))

  return run


def train_grid(model, variables, spec: GridSpec, images, labels, learning_rates,
               weight_decays, seeds, index):
  """Fine-tunes `variables` once per configuration (seed s, hyperparameters h) on
  `images[index[s]]` with `learning_rates[h]`, `weight_decays[h]`; one compiled program.
  Seeds run one after the other; the H hyperparameter settings of a seed run `chunk` at
  a time vmapped. The frozen prefix (`prefix_start`) of the images used is computed once
  (unless `spec.cache_frozen_prefix` is False). Returns the final variables with leading
  axes (S, H)."""
  index = np.asarray(index)
  if len(learning_rates) != len(weight_decays) or index.shape[:1] != (len(seeds),) or \
     index.ndim != 2:
    raise ConfigError(f"A grid needs H learning rates and H weight decays, S seeds and "
                      f"index rows (S, num_train); got {len(learning_rates)}, "
                      f"{len(weight_decays)}, {len(seeds)} and index shape {index.shape}.")
  used, index = np.unique(index, return_inverse=True)  # only the images the seeds use
  index = index.reshape(len(seeds), -1)
  start = prefix_start(model, variables, spec)
  inputs = prefix_features(model, variables, np.asarray(images)[used], start)
  run = _compiled_grid(model, spec, index.shape[1], start)
  return run(variables, inputs, jnp.asarray(np.asarray(labels)[used]),
             jnp.asarray(np.asarray(images)[:1]),
             jnp.asarray(learning_rates, jnp.float32), jnp.asarray(weight_decays, jnp.float32),
             jnp.asarray(seeds, jnp.uint32), jnp.asarray(index, jnp.int32))


def flat_configs(stacked):
  """(S, H, ...) -> (S * H, ...): seed-major, as `evaluate_grid` takes them."""
  return jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:]), stacked)


def evaluate_grid(model, stacked, images, labels, batch_size: int = 1000,
                  chunk: int = 1, start: int = 0) -> np.ndarray:
  """(K, N) bool: is example n classified right by configuration k (running BN stats).
  `start` > 0: `images` are the input of block `start` (`prefix_features`)."""
  n = len(labels)
  batch_size = min(batch_size, n)
  pad = -n % batch_size
  x = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
  y = np.concatenate([labels, np.zeros(pad, labels.dtype)])
  x = x.reshape((-1, batch_size) + images.shape[1:])
  y = y.reshape(-1, batch_size)
  # Leaves equal in every configuration (the frozen blocks) go in once, unbatched, so the
  # vmapped chunk computes what depends only on them (the frozen prefix) once.
  flat = {p: np.asarray(a) for p, a in partition.flatten(stacked).items()}
  shared = {p: a[0] for p, a in flat.items() if (a == a[:1]).all()}
  varying = {p: a for p, a in flat.items() if p not in shared}
  configs = np.arange(len(next(iter(flat.values()))))  # K, even when nothing varies
  correct = _evaluate(model, chunk, start, configs, varying, shared, jnp.asarray(x),
                      jnp.asarray(y))
  return np.asarray(correct)[:, :n]


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _evaluate(model, chunk, start, configs, varying, shared, x, y):
  def one(config):
    _, own = config  # this configuration's leaves
    variables = partition.unflatten({**shared, **own})
    def batch(_, xy):
      logits, _ = forward(model, variables["params"], variables.get("batch_stats", {}),
                          xy[0], train=False, start=start)
      return None, jnp.argmax(logits, -1) == xy[1]
    return jax.lax.scan(batch, None, (x, y))[1].reshape(-1)
  return jax.lax.map(one, (configs, varying), batch_size=chunk)


def take(stacked, k: int):
  """Configuration k's variables out of a stacked grid result."""
  return jax.tree_util.tree_map(lambda a: a[k], stacked)


def changed_leaves(before, after) -> dict:
  """{"params": [...], "batch_stats": [...]}: paths whose values differ at all."""
  out = {}
  for collection in ("params", "batch_stats"):
    a, b = partition.flatten(before.get(collection, {})), partition.flatten(after.get(collection, {}))
    out[collection] = sorted(p for p in a if not np.array_equal(np.asarray(a[p]), np.asarray(b[p])))
  return out


def count_values(tree, paths: Sequence[str]) -> int:
  flat = partition.flatten(tree)
  return int(sum(np.size(flat[p]) for p in paths))
