"""Episodic tasks: N-way K-shot classification over class-major arrays, and sinusoids.

A task T_i has a support set D_i^tr (`support_x`, `support_y`) and a query set D_i^ts
(`query_x`, `query_y`). Samplers are pure functions of a PRNG key that draw a whole
meta-batch at once on the device, so they run inside the jitted meta-step.
"""
import functools
import time
from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxtl import sharding
from jaxtl.data import ImageDataset
from jaxtl.errors import ConfigError


class Episodes(NamedTuple):
  """A meta-batch of tasks; every array has a leading task axis B."""
  support_x: jax.Array  # (B, N*K, ...)
  support_y: jax.Array  # (B, N*K) int labels 0..N-1, or (B, K, 1) regression targets
  query_x: jax.Array    # (B, N*Q, ...)
  query_y: jax.Array


def class_major(dataset: ImageDataset, classes, per_class: int = 0) -> np.ndarray:
  """Images of `classes` as one array (C, E, H, W, Ch); E = examples per class (the
  smallest count, or `per_class`). With `drawer` metadata (Omniglot's mirror), example e
  of every class is drawer e's, so that tasks can keep support and query drawers apart."""
  keys = (dataset.labels,) if "drawer" not in dataset.metadata else (
      dataset.metadata["drawer"], dataset.labels)
  order = np.lexsort(keys)
  labels = dataset.labels[order]
  groups = []
  for c in classes:
    lo, hi = np.searchsorted(labels, c), np.searchsorted(labels, c, side="right")
    groups.append(order[lo:hi])
  size = per_class or min(len(g) for g in groups)
  if min(len(g) for g in groups) < size:
    raise ConfigError(f"Some classes have fewer than {size} examples.")
  return np.stack([dataset.images[g[:size]] for g in groups])


def rotations(images: np.ndarray) -> np.ndarray:
  """Class augmentation of Santoro et al. / MAML: each 90-degree rotation is a new class.
  (C, E, H, W, Ch) -> (4C, E, H, W, Ch), rotation r of class c at index r*C + c."""
  return np.concatenate([np.rot90(images, k, axes=(2, 3)) for k in range(4)])


def class_alphabets(dataset: ImageDataset, classes) -> np.ndarray:
  """The alphabet of each of `classes` (Omniglot's `alphabet` metadata)."""
  if "alphabet" not in dataset.metadata:
    raise ConfigError(f"{dataset.name} ({dataset.source}) has no alphabet metadata; "
                      "alphabet-level splits and tasks need Omniglot with its alphabets.")
  order = np.argsort(dataset.labels, kind="stable")
  first = order[np.searchsorted(dataset.labels[order], np.asarray(classes))]
  return dataset.metadata["alphabet"][first]


def omniglot_class_splits(dataset: ImageDataset, split: str = "maml", seed: int = 1,
                          num_val: int = 0, num_val_alphabets: int = 0) -> dict:
  """Class ids per split. `maml`: 1200 characters chosen at random (seeded) for
  meta-training, the other 423 for testing, regardless of alphabet (Finn et al. 2017).
  `lake`: background alphabets (964) for training, evaluation alphabets (659) for testing.
  `num_val` classes are taken out of the training classes for validation, or, with
  `num_val_alphabets` (`lake`), every class of that many background alphabets drawn
  with `seed`, so that validation tasks are on new alphabets as the test's are."""
  classes = np.unique(dataset.labels)
  if split == "maml":
    perm = np.random.default_rng(seed).permutation(classes)
    train, test = perm[:1200], perm[1200:]
  elif split == "lake":
    train, test = classes[classes < 964], classes[classes >= 964]
  else:
    raise ConfigError(f"Unknown Omniglot split {split!r}; valid: 'maml', 'lake'.")
  if num_val_alphabets:
    if split != "lake" or num_val:
      raise ConfigError("num_val_alphabets holds out background alphabets of "
                        "class_split='lake'; set num_val_classes=0 with it.")
    alphabets = class_alphabets(dataset, train)
    names = np.unique(alphabets)
    if not 0 < num_val_alphabets < len(names):
      raise ConfigError(f"num_val_alphabets={num_val_alphabets} must lie in "
                        f"[1, {len(names) - 1}] for the {len(names)} background alphabets.")
    held = np.random.default_rng(seed).permutation(names)[:num_val_alphabets]
    val = np.isin(alphabets, held)
    return {"train": np.sort(train[~val]), "val": np.sort(train[val]), "test": np.sort(test)}
  if not 0 <= num_val < len(train):
    raise ConfigError(f"num_val={num_val} must lie in [0, {len(train)}).")
  cut = len(train) - num_val
  return {"train": np.sort(train[:cut]), "val": np.sort(train[cut:]), "test": np.sort(test)}


CLASS_SPLITS = ("maml", "lake", "random")


def class_splits(dataset: ImageDataset, split: str, seed: int = 1, num_val: int = 0,
                 num_train: int = 0, num_val_alphabets: int = 0) -> dict:
  """Class ids per split: Omniglot's `maml` and `lake` (`omniglot_class_splits`), or, for
  any dataset, `random`: `num_train` classes drawn with `seed` for meta-training (0: 60%),
  the others for testing; `num_val` of the training classes held out for validation."""
  if split not in CLASS_SPLITS:
    raise ConfigError(f"Unknown class_split {split!r}; valid: {CLASS_SPLITS}.")
  if split != "random":
    if dataset.name != "omniglot":
      raise ConfigError(f"class_split={split!r} is Omniglot's; for {dataset.name} use "
                        "class_split='random' (with num_train_classes).")
    return omniglot_class_splits(dataset, split, seed, num_val, num_val_alphabets)
  if num_val_alphabets:
    raise ConfigError("num_val_alphabets is for class_split='lake' (Omniglot's alphabets).")
  classes = np.unique(dataset.labels)
  num_train = num_train or int(round(0.6 * len(classes)))
  if not 0 < num_train < len(classes):
    raise ConfigError(f"num_train_classes={num_train}; valid: 1..{len(classes) - 1} for the "
                      f"{len(classes)} classes of {dataset.name}.")
  if not 0 <= num_val < num_train:
    raise ConfigError(f"num_val_classes={num_val} must lie in [0, {num_train}).")
  perm = np.random.default_rng(seed).permutation(classes)
  cut = num_train - num_val
  return {"train": np.sort(perm[:cut]), "val": np.sort(perm[cut:num_train]),
          "test": np.sort(perm[num_train:])}


def check_episode_shape(num_classes: int, per_class: int, way: int, shot: int, query: int):
  if way < 1 or shot < 1 or query < 1:
    raise ConfigError(f"way={way}, shot={shot}, query={query} must all be at least 1.")
  if way > num_classes:
    raise ConfigError(f"{way}-way tasks need {way} classes but the split has {num_classes}.")
  if shot + query > per_class:
    raise ConfigError(f"shot + query = {shot} + {query} = {shot + query} examples per class, "
                      f"but each class has only {per_class}.")


def random_subset(key, n: int, k: int) -> jax.Array:
  """k distinct indices of range(n), uniformly at random, in random order: the top k of
  n i.i.d. uniforms. Same law as `jax.random.choice(replace=False)`, which sorts a full
  permutation and cost ~60 ms per meta-batch of 32 Omniglot tasks on CPU (~1 ms here)."""
  # float32 explicitly: the same draws with jax_enable_x64 on (float64 test references).
  return jax.lax.top_k(jax.random.uniform(key, (n,), jnp.float32), k)[1]


def sample_classification(key, data: jax.Array, batch: int, way: int, shot: int,
                          query: int) -> Episodes:
  """`batch` N-way K-shot tasks from class-major `data` (C, E, H, W, Ch): N distinct
  classes per task in random order (labels 0..N-1), K + Q distinct examples per class."""
  num_classes, per_class = data.shape[:2]
  check_episode_shape(num_classes, per_class, way, shot, query)

  def one_task(k):
    k_cls, k_ex = jax.random.split(k)
    classes = random_subset(k_cls, num_classes, way)
    examples = jax.vmap(lambda kk: random_subset(kk, per_class, shot + query))(
        jax.random.split(k_ex, way))
    images = data[classes[:, None], examples]  # (N, K+Q, H, W, Ch)
    labels = jnp.broadcast_to(jnp.arange(way)[:, None], (way, shot + query))
    flat = lambda a: a.reshape((-1,) + a.shape[2:])
    return Episodes(flat(images[:, :shot]), flat(labels[:, :shot]),
                    flat(images[:, shot:]), flat(labels[:, shot:]))

  return jax.vmap(one_task)(jax.random.split(key, batch))


TASK_KINDS = ("random", "alphabet", "lake_runs", "lake_drawers")


def group_table(groups: np.ndarray, way: int) -> np.ndarray:
  """(G, M) int32: row g lists the indices (into the class-major array) of the classes of
  the g-th group (alphabet) that has at least `way` classes, padded with -1."""
  rows = [np.flatnonzero(groups == g) for g in np.unique(groups)]
  rows = [r for r in rows if len(r) >= way]
  if not rows:
    largest = max(np.sum(groups == g) for g in np.unique(groups))
    raise ConfigError(f"No alphabet has {way} classes (the largest has {largest}): "
                      f"{way}-way within-alphabet tasks are impossible.")
  table = np.full((len(rows), max(len(r) for r in rows)), -1, np.int32)
  for i, r in enumerate(rows):
    table[i, :len(r)] = r
  return table


def sample_within_groups(key, data: jax.Array, table: jax.Array, batch: int, way: int,
                         shot: int, query: int) -> Episodes:
  """`batch` N-way K-shot tasks as Lake et al. (2015) define Omniglot's one-shot
  challenge: the N classes of a task come from one group (an alphabet: the `table` row of
  `group_table`, drawn uniformly), and its K support and Q query examples per class come
  from disjoint drawers, the same ones for every class of the task (example e of each
  class is drawer e's: `class_major`)."""
  data, table = jnp.asarray(data), jnp.asarray(table)
  num_classes, per_class = data.shape[:2]
  check_episode_shape(num_classes, per_class, way, shot, query)
  groups, members = table.shape

  def one_task(k):
    k_group, k_cls, k_drawer = jax.random.split(k, 3)
    row = table[jax.random.randint(k_group, (), 0, groups)]
    scores = jnp.where(row >= 0, jax.random.uniform(k_cls, (members,), jnp.float32), -1.0)
    classes = row[jax.lax.top_k(scores, way)[1]]  # `way` distinct classes of the group
    drawers = random_subset(k_drawer, per_class, shot + query)  # support's, then query's
    images = data[classes[:, None], drawers[None, :]]  # (N, K+Q, H, W, Ch)
    labels = jnp.broadcast_to(jnp.arange(way)[:, None], (way, shot + query))
    flat = lambda a: a.reshape((-1,) + a.shape[2:])
    return Episodes(flat(images[:, :shot]), flat(labels[:, :shot]),
                    flat(images[:, shot:]), flat(labels[:, shot:]))

  return jax.vmap(one_task)(jax.random.split(key, batch))


def affine_is_on(rotate_deg: float = 0.0, scale=(1.0, 1.0), translate: float = 0.0) -> bool:
  """Whether `train_affine`'s settings warp anything (all zero, scale (1, 1): no)."""
  return bool(rotate_deg or translate or tuple(scale) != (1.0, 1.0))


def check_affine(name: str, rotate_deg: float, scale, translate: float):
  if rotate_deg < 0 or translate < 0 or not 0 < scale[0] <= scale[1]:
    raise ConfigError(f"{name}: rotate_deg={rotate_deg} and translate={translate} "
                      f"must be >= 0 and scale={tuple(scale)} a range 0 < low <= high.")


def with_affine(sampler, rotate_deg: float = 0.0, scale=(1.0, 1.0), translate: float = 0.0):
  """`sampler` whose every image, support and query, gets its own random affine warp
  (`jaxtl.objectives.augment.random_affine`, drawn from the episode's key): Koch et al.'s
  training distortions, without their shear. All zero (scale (1, 1)): `sampler` itself."""
  if not affine_is_on(rotate_deg, scale, translate):
    return sampler
  check_affine("train_affine", rotate_deg, scale, translate)

  def warped(key, data, batch):
    key, k_support, k_query = jax.random.split(key, 3)
    return warp_episodes((k_support, k_query), sampler(key, data, batch), rotate_deg, scale,
                         translate)
  return warped


def warp_episodes(keys, episodes, rotate_deg: float, scale, translate: float):
  """`episodes` with each image, support and query, warped by its own random affine map
  (`jaxtl.objectives.augment.random_affine`) drawn from `keys` (the support's, the
  queries')."""
  from jaxtl.objectives import augment  # pylint: disable=import-outside-toplevel
  k_support, k_query = keys

  def warp(k, x):  # (B, M, H, W, C): each of the B * M images its own warp
    flat = augment.random_affine(k, x.reshape((-1,) + x.shape[2:]), rotate_deg,
                                 tuple(scale), translate)
    return flat.reshape(x.shape)
  return episodes._replace(support_x=warp(k_support, episodes.support_x),
                           query_x=warp(k_query, episodes.query_x))


class FixedTasks:
  """A sampler of fixed tasks (Lake's runs): task t has the classes `classes[t]` (rows of
  the class-major data, labelled 0..N-1 in that order), each shown by drawer `support[t]`
  and queried by drawer `query[t]`. `over_eval_tasks` scores each once, in chunks
  (`take`); called as a sampler it gives the first `batch` tasks, whatever its key."""

  def __init__(self, classes, support, query):
    self.classes, self.support, self.query = (jnp.asarray(a, jnp.int32)
                                              for a in (classes, support, query))
    self.num_tasks = len(self.classes)

  def take(self, start, data, count: int) -> Episodes:
    """Tasks start, ..., start + count - 1 (modulo num_tasks: a last chunk wraps)."""
    index = (start + jnp.arange(count)) % self.num_tasks
    classes = self.classes[index]
    images = lambda drawers: data[classes, drawers[index][:, None]]  # (count, N, H, W, C)
    labels = jnp.broadcast_to(jnp.arange(classes.shape[1]), classes.shape)
    return Episodes(images(self.support), labels, images(self.query), labels)

  def __call__(self, key, data, batch):
    del key
    return self.take(0, data, batch)


LAKE_TASKS = ("lake_runs", "lake_drawers")


def lake_sampler(kind: str, way: int, shot: int, query: int, names) -> FixedTasks:
  """Lake et al.'s 20 runs (`lake_runs`), or their characters with every ordered pair of
  their drawers (`lake_drawers`), as fixed tasks (`jaxtl.data.lake_runs.task_table`).
  `names`: each row's character of the class-major data."""
  from jaxtl.data import lake_runs  # pylint: disable=import-outside-toplevel
  if (way, shot, query) != (lake_runs.WAY, 1, 1):
    raise ConfigError(f"test_tasks={kind!r} are 20-way 1-shot with one query per "
                      f"character; got way={way}, test_shot={shot}, test_query={query}.")
  if names is None:
    raise ConfigError(f"test_tasks={kind!r} needs the characters' names (Omniglot's "
                      "mirror, source='mirror', splits=('all',), rotate_test=False).")
  pairs = "runs" if kind == "lake_runs" else "all"
  return FixedTasks(*lake_runs.task_table(names, drawer_pairs=pairs))


def make_sampler(kind: str, way: int, shot: int, query: int, groups=None, names=None):
  """sampler(key, data, batch) -> Episodes: `random` tasks (`sample_classification`),
  `alphabet` tasks (`sample_within_groups` over `groups`, each class's alphabet), or
  Lake's fixed tasks (`lake_sampler`; `names`: each class's name)."""
  if kind not in TASK_KINDS:
    raise ConfigError(f"Unknown task kind {kind!r}; valid: {TASK_KINDS}.")
  if kind in LAKE_TASKS:
    return lake_sampler(kind, way, shot, query, names)
  if kind == "random":
    return lambda key, data, batch: sample_classification(key, data, batch, way, shot, query)
  if groups is None:
    raise ConfigError("alphabet tasks need each class's alphabet (Omniglot).")
  table = jnp.asarray(group_table(np.asarray(groups), way))
  return lambda key, data, batch: sample_within_groups(key, data, table, batch, way, shot,
                                                       query)


SINUSOID_AMPLITUDE = (0.1, 5.0)
SINUSOID_PHASE = (0.0, np.pi)
SINUSOID_X = (-5.0, 5.0)


def sample_sinusoid(key, batch: int, shot: int, query: int) -> Tuple[Episodes, jax.Array]:
  """MAML's sinusoid regression: y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi],
  x ~ U[-5, 5]. Returns (episodes with x, y of shape (B, K, 1)), (amplitude, phase))."""
  k_a, k_p, k_x = jax.random.split(key, 3)
  amplitude = jax.random.uniform(k_a, (batch, 1, 1), minval=SINUSOID_AMPLITUDE[0],
                                 maxval=SINUSOID_AMPLITUDE[1])
  phase = jax.random.uniform(k_p, (batch, 1, 1), minval=SINUSOID_PHASE[0],
                             maxval=SINUSOID_PHASE[1])
  x = jax.random.uniform(k_x, (batch, shot + query, 1), minval=SINUSOID_X[0],
                         maxval=SINUSOID_X[1])
  y = amplitude * jnp.sin(x - phase)
  episodes = Episodes(x[:, :shot], y[:, :shot], x[:, shot:], y[:, shot:])
  return episodes, jnp.concatenate([amplitude, phase], axis=-1)[:, 0]


def over_eval_tasks(config, data, sampler, score, mesh=None):
  """`score(episodes, key)` (a pytree with a leading task axis; `key`: the chunk's, for
  draws of its own) on the `eval_tasks` tasks drawn with `eval_seed`, in chunks of
  `eval_batch`: every evaluation of a config scores the same tasks; `FixedTasks` (Lake's)
  are scored once each. With a `mesh` whose size divides `eval_batch`, each chunk's tasks
  are split over its devices."""
  fixed = isinstance(sampler, FixedTasks)
  total = sampler.num_tasks if fixed else config.eval_tasks
  batch = config.eval_batch
  if mesh is not None and batch % mesh.devices.size:
    logging.warning("eval_batch=%d is not divisible by the %d devices: evaluating on one.",
                    batch, mesh.devices.size)
    mesh = None
  replicated = {} if mesh is None else {"out_shardings": sharding.replicated(mesh)}

  @functools.partial(jax.jit, **replicated)
  def chunk(data, key, start):  # data as an argument: not a constant compiled into the program
    episodes = sampler.take(start, data, batch) if fixed else sampler(key, data, batch)
    if mesh is not None:
      episodes = sharding.shard_batch(episodes, mesh)
    return score(episodes, key)

  key = jax.random.PRNGKey(config.eval_seed)
  n = -(-total // batch)
  chunks, start, printed = [], time.perf_counter(), time.perf_counter()
  for i in range(n):
    chunks.append(jax.tree_util.tree_map(np.asarray, chunk(data, jax.random.fold_in(key, i),
                                                           i * batch)))
    now = time.perf_counter()
    if now - printed >= 30 or (i == 0 and n > 1):  # a line after compiling, then by time
      printed = now
      logging.info("evaluation: %d/%d tasks | ETA %.0fs", (i + 1) * batch, n * batch,
                   (now - start) / (i + 1) * (n - i - 1))
  return jax.tree_util.tree_map(lambda *parts: np.concatenate(parts)[:total],
                                *chunks)
