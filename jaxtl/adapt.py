"""Adapt a trained run to your own task and predict: `load(workdir).adapt(support)`.

    from jaxtl import adapt
    run = adapt.load("runs/maml_5w1s")             # any finished jaxtl run folder
    task = run.adapt("my_task/support")            # or run.adapt(images, labels)
    predictions = task.predict("my_task/query")    # or task.predict(images)
    predictions.labels, predictions.probabilities, predictions.class_names

What adapting means is the run's own test-time procedure:
  * meta-learned runs (experiments.meta_train) do what their episodic evaluation does:
    MAML, FOMAML, ANIL, Meta-SGD, Reptile and `pretrain` take `test_inner_steps` steps at
    `test_inner_lr` (the run's config; `steps`, `lr` override) on the support set, whose
    classes must number the head's `way` outputs; ProtoNets averages each class's support
    embeddings into a prototype (any number of classes); the black box reads the support
    set in its forward pass (`way` classes).
  * fine-tuned or pre-trained runs (experiments.pretrain / finetune) fit a linear probe: a
    new head with one output per support class, initialised at zero, trained with the
    body frozen by `steps` (default 100) full-batch gradient steps at `lr` (default 0.5),
    each halved until it lowers the support loss (a convex problem: it cannot diverge).
    `run.adapt()` without a support set keeps the run's own head and classes.

Batch norm at prediction: meta-learned runs normalise the support set with its own
statistics and each query with the support set's (`batch_norm="support"` in
`jaxtl.meta.algorithms`), so a query's prediction does not depend on the other queries;
their episodic evaluation does the same with `--config.batch_norm=support`. Fine-tuned
runs use their running averages, as their trainer evaluates them.

Images: a support folder holds one sub-folder per class (sorted names are the classes);
a query folder holds images, or class sub-folders (then `Predictions.accuracy` is known).
Files of any size and any format Pillow reads become the model's input as
`jaxtl.data.images` describes (size, grey or RGB, ink polarity `auto`, `dark_ink` or
`light_ink`). Arrays must already be model inputs: (N, H, W, C) floats in [0, 1], ink near 1.
"""
import dataclasses
import functools
import os
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtl import checkpoint, workdir as run_dir
from jaxtl.data import images as image_files
from jaxtl.data import load_dataset
from jaxtl.errors import ConfigError, MissingInputError
from jaxtl.finetune import prefix
from jaxtl.meta.algorithms import MetaLearner
from jaxtl.models import block_names, build_model

PROBE_STEPS, PROBE_LR = 100, 0.5


@dataclasses.dataclass(frozen=True)
class Predictions:
  """Predicted `labels` (indices into `class_names`), `probabilities` (N, classes), the
  query `paths` when read from files, and `true_labels` / `accuracy` when known."""
  labels: np.ndarray
  probabilities: np.ndarray
  class_names: tuple
  paths: tuple = ()
  true_labels: Optional[np.ndarray] = None

  @property
  def accuracy(self) -> Optional[float]:
    if self.true_labels is None:
      return None
    return float(np.mean(self.labels == self.true_labels))

  def to_csv(self, path: str):
    """One row per query: path, predicted class, [true class,] each class's probability."""
    true = self.true_labels is not None
    header = ["path", "predicted"] + (["true"] if true else []) + [
        f"p_{n}" for n in self.class_names]
    rows = [",".join(header)]
    for i, label in enumerate(self.labels):
      row = [self.paths[i] if self.paths else str(i), self.class_names[label]]
      row += [self.class_names[self.true_labels[i]]] if true else []
      rows.append(",".join(row + [f"{p:.6f}" for p in self.probabilities[i]]))
    with open(path, "w") as f:
      f.write("\n".join(rows) + "\n")


@dataclasses.dataclass(frozen=True)
class AdaptedTask:
  """A run adapted to one task; `predict(images or folder)`."""
  learner: MetaLearner
  params: dict
  batch_stats: dict
  support_x: Optional[np.ndarray]
  support_y: Optional[np.ndarray]
  class_names: tuple
  input_shape: tuple
  polarity: str = "auto"

  def predict(self, query) -> Predictions:
    """Predictions for query images: an array (N, H, W, C), a folder of images, or a
    folder of class sub-folders named as the support set's classes."""
    x, true, paths = self._read_query(query)
    logits = _logits(self.learner, self.params, self.batch_stats, self.support_x,
                     self.support_y, jnp.asarray(x))
    probabilities = np.asarray(jax.nn.softmax(logits, -1))
    return Predictions(probabilities.argmax(-1), probabilities, self.class_names, paths, true)

  def _read_query(self, query):
    if not isinstance(query, (str, os.PathLike)):
      return _check_shape(query, self.input_shape, "query images"), None, ()
    folder, (height, width, channels) = str(query), self.input_shape
    has_classes = os.path.isdir(folder) and any(
        os.path.isdir(os.path.join(folder, n)) for n in os.listdir(folder))
    if not has_classes:
      x, paths = image_files.read_images(folder, (height, width), channels, self.polarity)
      return x, None, tuple(paths)
    x, labels, classes, paths = image_files.read_labelled(folder, (height, width), channels,
                                                          self.polarity)
    unknown = sorted(set(classes) - set(self.class_names))
    if unknown:
      raise ConfigError(f"Query classes {unknown} of {folder} are not among the support "
                        f"set's classes {list(self.class_names)}.")
    true = np.asarray([self.class_names.index(classes[l]) for l in labels])
    return x, true, tuple(paths)


@dataclasses.dataclass(frozen=True)
class Run:
  """A finished jaxtl run: `kind` "meta" or "finetune", its saved `config` (JSON), its
  learner (batch norm as the module docstring says) and variables."""
  workdir: str
  kind: str
  config: ml_collections.ConfigDict
  learner: MetaLearner
  meta_params: dict    # {"params": ..., "inner_lr": ...} (`MetaLearner.init`)
  batch_stats: dict
  input_shape: tuple
  class_names: tuple = ()

  def adapt(self, support=None, labels: Optional[Sequence[int]] = None,
            class_names: Sequence[str] = (), steps: Optional[int] = None,
            lr: Optional[float] = None, polarity: str = "auto") -> AdaptedTask:
    """Adapts to a support set: a folder of class sub-folders, or images (N, H, W, C) with
    integer `labels` 0..M-1 (and optional `class_names`). `steps` / `lr` override the
    run's test-time inner loop (meta) or the linear probe's (fine-tuned runs)."""
    if steps is not None and steps < 0:
      raise ConfigError(f"steps={steps} must be >= 0.")
    if support is None:
      if self.kind == "meta":
        raise ConfigError(f"{self.workdir} is meta-learned: it predicts after adapting to a "
                          "support set; pass one (a folder of class sub-folders or images "
                          "and labels).")
      return AdaptedTask(self.learner, self.meta_params["params"], self.batch_stats, None, None,
                         self.class_names, self.input_shape, polarity)
    x, y, names = self._read_support(support, labels, class_names, polarity)
    if self.kind == "finetune":
      return self._linear_probe(x, y, names, steps, lr, polarity)
    learner, config = self.learner, self.config
    if learner.algorithm == "protonet":
      learner = dataclasses.replace(learner, ways=len(names))
      params = self.meta_params["params"]
    elif learner.algorithm == "relation":  # scores any number of classes
      learner = dataclasses.replace(learner, ways=len(names),
                                    model=learner.model.clone(way=len(names)))
      params = self.meta_params["params"]
    elif learner.algorithm == "blackbox" and len(names) == learner.ways:
      params = self.meta_params["params"]  # reads the support set in its forward pass
    else:
      if len(names) != learner.ways:
        raise ConfigError(
            f"The support set has {len(names)} classes but {self.workdir} was meta-trained "
            f"{learner.ways}-way ({config.algorithm}): its head has {learner.ways} outputs. "
            f"Give {learner.ways} classes, or adapt a ProtoNets or relation network run or a "
            "pre-trained run (a linear probe), which serve any number of classes.")
      steps = config.test_inner_steps if steps is None else steps
      lr = lr or config.test_inner_lr or config.inner_lr
      params = _adapt(learner, self.meta_params, self.batch_stats, jnp.asarray(x),
                      jnp.asarray(y), steps, lr, config.test_backtrack)
    return AdaptedTask(learner, params, self.batch_stats, x, y, names, self.input_shape,
                       polarity)

  def _read_support(self, support, labels, class_names, polarity):
    if isinstance(support, (str, os.PathLike)):
      if labels is not None:
        raise ConfigError("Pass labels with support images, not with a support folder: "
                          "its class sub-folders are the labels.")
      height, width, channels = self.input_shape
      data = image_files.read_folder(str(support), (height, width), channels, polarity)
      return data.images, data.labels, data.class_names
    x = _check_shape(support, self.input_shape, "support images")
    if labels is None:
      raise ConfigError("Support images need their labels (integers 0..M-1).")
    y = np.asarray(labels)
    classes = np.unique(y)
    if y.shape != (len(x),) or not np.array_equal(classes, np.arange(len(classes))):
      raise ConfigError(f"labels must be one integer per support image, covering 0..M-1; got "
                        f"shape {y.shape} with values {classes.tolist()[:10]}.")
    names = tuple(class_names) or tuple(str(c) for c in classes)
    if len(names) != len(classes):
      raise ConfigError(f"{len(names)} class_names for {len(classes)} classes.")
    return x, y.astype(np.int32), names

  def _linear_probe(self, x, y, names, steps, lr, polarity) -> AdaptedTask:
    """A zero-initialised head of len(names) outputs fitted on (x, y), the body frozen.
    The body's output on x does not change while the head learns, so for a model that
    runs a range of its blocks (jaxtl's: `start` / `stop`) it is computed once and the
    head fitted on it; other modules run whole at every step. The same steps either way."""
    model = _with_outputs(self.learner.model, len(names))
    fresh = model.init(jax.random.PRNGKey(0), jnp.asarray(x[:1]), train=False)["params"]
    head = block_names(model, fresh)[-1]
    zero_head = jax.tree_util.tree_map(jnp.zeros_like, fresh[head])
    params = dict(self.meta_params["params"], **{head: zero_head})
    learner = dataclasses.replace(self.learner, model=model, algorithm="maml", ways=len(names),
                                  inner_table=((f"^{head}/", True), (r".*", False)))
    steps, lr = PROBE_STEPS if steps is None else steps, lr or PROBE_LR
    x, y = jnp.asarray(x), jnp.asarray(y)
    if prefix.sliceable(model):
      last = len(block_names(model, fresh)) - 1
      body = dataclasses.replace(learner, model=_Blocks(model, stop=last))
      features = _body_features(body, self.meta_params["params"], self.batch_stats, x)
      on_head = dataclasses.replace(learner, model=_Blocks(model, start=last))
      fitted = _adapt(on_head, {"params": {head: zero_head}, "inner_lr": {}}, {}, features, y,
                      steps, lr, True)
      params = dict(params, **fitted)
    else:
      params = _adapt(learner, {"params": params, "inner_lr": {}}, self.batch_stats, x, y,
                      steps, lr, True)
    return AdaptedTask(learner, params, self.batch_stats, None, None, names, self.input_shape,
                       polarity)


def load(workdir: str, model=None, data_dir: str = "") -> Run:
  """The finished run in `workdir` (its config and final variables). `model`: the Flax
  module it was trained with, if not one of jaxtl's registry (`config.model`).
  Training data are read only for a run that did not record its `input_shape` (runs
  before it was recorded), from `data_dir` resolved as everywhere (`data_dir_of`)."""
  config = run_dir.load_config(workdir)
  if config is None:
    raise MissingInputError(f"{workdir} holds no jaxtl run (no config.json or results.json).")
  if not os.path.isdir(os.path.join(workdir, checkpoint.VARIABLES_DIR)):
    raise MissingInputError(f"{workdir} holds no final variables ({checkpoint.VARIABLES_DIR}/): "
                            "adapt a finished run (rerun its command to finish it).")
  variables = checkpoint.load_variables(workdir)
  metrics = run_dir.saved_results(workdir).get("metrics", {})
  shape = tuple(metrics.get("input_shape") or _input_shape(config, data_dir_of(config,
                                                                               data_dir)))
  if "algorithm" in config:
    from jaxtl.meta.train import make_learner  # pylint: disable=import-outside-toplevel
    if config.dataset == "sinusoid":
      raise ConfigError(f"{workdir} is a sinusoid regression run; jaxtl.adapt serves image "
                        "classification runs.")
    learner = dataclasses.replace(make_learner(config, model), batch_norm="support")
    return Run(workdir, "meta", config, learner, variables["meta_params"],
               variables.get("batch_stats", {}), shape)
  if "strategy" in config:
    params = variables["params"]
    head = block_names(model, params)[-1] if model is not None else "head"
    outputs = jax.tree_util.tree_leaves(params[head])[0].shape[-1]  # bias (K,), kernel (d, K)
    names = tuple(map(str, config.classes or range(outputs)))
    model = model or build_model(config.model, num_classes=outputs, **config.model_kwargs)
    learner = MetaLearner(model, batch_norm="running", ways=outputs)
    return Run(workdir, "finetune", config, learner, {"params": params, "inner_lr": {}},
               variables.get("batch_stats", {}), shape, names)
  raise ConfigError(f"{workdir} holds a run of another kind (neither meta-learned nor "
                    "pre-trained / fine-tuned); jaxtl.adapt serves those two.")


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_dir_of(config, data_dir: str = "") -> str:
  """Where a saved run's data are: `data_dir` (the caller's), else $JAXTL_DATA_DIR, else
  the run's saved `data_dir` (a relative one is relative to the repository the run was
  made in, not to the working directory), else none (TFDS)."""
  if data_dir or os.environ.get("JAXTL_DATA_DIR"):
    return data_dir or os.environ["JAXTL_DATA_DIR"]
  saved = config.get("data_dir", "") or ""
  return saved if not saved or os.path.isabs(saved) else os.path.join(REPO, saved)


def _input_shape(config, data_dir: str) -> tuple:
  """(H, W, C) of a run that did not record its `input_shape`: one example of its data."""
  split = config.splits[0] if "algorithm" in config else config.test_split
  data = load_dataset(config.dataset, split, data_dir=data_dir, source=config.source)
  return data.images.shape[1:]


def _check_shape(images, input_shape, what) -> np.ndarray:
  x = np.asarray(images, np.float32)
  if x.shape[1:] != tuple(input_shape) or len(x) == 0:
    shape = ", ".join(map(str, input_shape))
    raise ConfigError(f"{what} have shape {x.shape}; the model takes (N, {shape}) with N >= 1 "
                      "(convert other images with jaxtl.data.images.to_model_input, "
                      "or pass a folder).")
  return x


def _with_outputs(model, n: int):
  """`model` with a head of `n` outputs (its `num_classes` or `num_outputs` field)."""
  for field in ("num_classes", "num_outputs"):
    if hasattr(model, field):
      return model.clone(**{field: n})
  raise ConfigError(f"{type(model).__name__} has no num_classes or num_outputs field, so a "
                    f"linear probe cannot give it a head of {n} outputs.")


class _Blocks(nn.Module):
  """`model`'s blocks `start:stop` as a module of their own, its parameters at their own
  paths (shared scope): the body alone, or the head alone on the body's output."""
  model: nn.Module
  start: int = 0
  stop: Optional[int] = None

  def setup(self):
    nn.share_scope(self, self.model)

  def __call__(self, x, train: bool = True):
    return self.model(x, train, start=self.start, stop=self.stop)


@functools.partial(jax.jit, static_argnames=("learner",))
def _body_features(learner, params, batch_stats, x):
  """The body's output on the support set x, in the learner's batch-norm mode."""
  return learner.apply(params, batch_stats, x)


@functools.partial(jax.jit, static_argnames=("learner", "steps", "backtrack"))
def _adapt(learner, meta_params, batch_stats, x, y, steps, lr, backtrack):
  return learner.adapt(meta_params, batch_stats, x, y, steps, lr=lr, backtrack=backtrack)[0]


@functools.partial(jax.jit, static_argnames=("learner",))
def _logits(learner, params, batch_stats, support_x, support_y, x):
  return learner.query_logits(params, batch_stats, support_x, support_y, x)
