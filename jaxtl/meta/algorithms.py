"""The MAML family, Reptile, ProtoNets and plain pre-training as one `MetaLearner`.

Meta-parameters are `{"params": theta, "inner_lr": alpha}`; alpha is empty unless it
is learned (Meta-SGD). Which leaves the inner loop adapts is a pattern table
(`jaxtl.partition`) with True/False labels: MAML adapts every weight but batch norm's
scale and offset, ANIL only the head; any other choice is configuration. The algorithm's
name alone decides what is computed: `fomaml` is first order and `anil` adapts the head,
whoever builds the learner.

| algorithm  | inner loop                                  | outer gradient                     |
|------------|---------------------------------------------|------------------------------------|
| `maml`     | `inner_steps` SGD steps on the support set  | through the inner loop (2nd order) |
| `fomaml`   | same                                        | inner gradients treated as constant|
| `anil`     | same, head only (config table)              | 2nd order                          |
| `metasgd`  | per-parameter learned step sizes            | 2nd order, also w.r.t. the steps   |
| `reptile`  | SGD on support + query                      | theta - phi (Nichol et al. 2018)   |
| `protonet` | none: nearest class mean in embedding space | plain (Snell et al. 2017)          |
| `blackbox` | none: one forward pass reads the support set | plain (`jaxtl.models.blackbox`)   |
| `relation` | none: a learned score for each (class, query) | plain (`jaxtl.models.relation`)   |
| `pretrain` | none: one model on all tasks' data          | plain                              |

Conventions. The inner loss is the *mean* over the support examples. The MAML paper's
code sums over the N*K examples and divides by K, so its step alpha equals N * alpha
here (Omniglot 5-way alpha 0.4 -> 2.0; 20-way 0.1 -> 2.0).

Batch norm (`batch_norm`), in training and evaluation alike:
  * `transductive` (MAML's code, the default): each batch is normalised with its own
    statistics, the support set with the support's and the query set with the query's
    (ProtoNets: support and query as one batch), so a query's output depends on the other
    queries;
  * `support`: the support set with its own statistics, queries with the support set's
    (under the adapted weights): a query's output depends on the task, not on the other
    queries (`jaxtl.adapt` predicts this way);
  * `running`: every batch with the saved running averages (a fine-tuned or pre-trained
    model, as its trainer evaluates it).
"""
import dataclasses
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxtl import partition
from jaxtl.errors import ConfigError
from jaxtl.meta import prototypes
from jaxtl.meta.tasks import Episodes
from jaxtl.models import batch_statistics

ALGORITHMS = ("maml", "fomaml", "anil", "metasgd", "reptile", "protonet", "blackbox",
              "relation", "pretrain")
# Models called on the whole task, model(support_x, support_y, query_x) -> query logits.
TASK_MODELS = ("blackbox", "relation")
NO_INNER_LOOP = ("protonet",) + TASK_MODELS  # one forward pass, the same at every step count
INNER_LR_MODES = ("fixed", "per_param", "per_layer_step")
TASK_BATCHING = ("auto", "vmap", "map", "unroll")
BATCH_NORM_MODES = ("transductive", "support", "running")
MAX_HALVINGS = 20  # of a backtracking test-time step: 2^-20 of the step size at least
# Default inner-loop tables: (regex, adapt?). MAML's leaves batch norm (jaxtl's `bn`
# layers, Flax's auto-named `BatchNorm_k`) alone; a model without batch norm adapts all.
BATCH_NORM = r"/bn/|(^|/)BatchNorm_\d+/"
MAML_TABLE = ((BATCH_NORM, False), (r".*", True))
ADAPT_ALL = ((r".*", True),)
ANIL_TABLE = ((r"^head/", True), (r".*", False))


@dataclasses.dataclass(frozen=True)
class MetaLearner:
  """Everything static about a meta-learner; `inner_table` decides what adapts."""
  model: nn.Module
  algorithm: str = "maml"
  loss: str = "xent"                  # xent (classification) | mse (regression)
  inner_table: tuple | None = None  # None: ANIL_TABLE for anil, else MAML_TABLE
  inner_steps: int = 1
  inner_lr: float = 0.4
  inner_lr_mode: str = "fixed"
  remat: bool = False                 # jax.checkpoint each inner step: memory ~ O(1) in steps
  task_batching: str = "vmap"         # vmap | map (lax.map, a compiled loop) | unroll
  ways: int = 5                       # N of N-way tasks (ProtoNets' number of prototypes)
  batch_norm: str = "transductive"    # transductive | support | running (module docstring)
  support_steps: int = 0              # ProtoNets at test time: Adam steps fine-tuning the
  support_lr: float = 1e-3            # embedding on the support (`finetuned_protonet_logits`)

  def __post_init__(self):
    for value, valid, name in [(self.algorithm, ALGORITHMS, "algorithm"),
                               (self.inner_lr_mode, INNER_LR_MODES, "inner_lr_mode"),
                               (self.task_batching, TASK_BATCHING[1:], "task_batching"),
                               (self.loss, ("xent", "mse"), "loss"),
                               (self.batch_norm, BATCH_NORM_MODES, "batch_norm")]:
      if value not in valid:
        raise ConfigError(f"Unknown {name} {value!r}; valid: {list(valid)}.")
    if self.inner_steps < 0:
      raise ConfigError(f"inner_steps={self.inner_steps} must be >= 0.")
    if self.support_steps < 0 or (self.support_steps and self.algorithm != "protonet"):
      raise ConfigError(f"support_steps={self.support_steps}: fine-tuning on the support "
                        f"is ProtoNets' (>= 0); algorithm={self.algorithm!r} adapts with "
                        "test_inner_steps.")
    if self.algorithm == "anil" and self.inner_table not in (None, ANIL_TABLE):
      raise ConfigError(f"algorithm='anil' adapts the head only (ANIL_TABLE); for another "
                        f"inner_table {self.inner_table} use algorithm='maml' or 'fomaml'.")
    if self.inner_table is None:
      table = ANIL_TABLE if self.algorithm == "anil" else MAML_TABLE
      object.__setattr__(self, "inner_table", table)

  @property
  def first_order(self) -> bool:
    """First-order MAML treats the inner gradients as constants in the outer gradient."""
    return self.algorithm == "fomaml"

  # ---- parameters -------------------------------------------------------------------
  def init(self, key, x):
    """Returns (meta_params, batch_stats) for example inputs `x` (one batch)."""
    if self.algorithm in TASK_MODELS:  # model(support_x, support_y, query_x)
      variables = self.model.init(key, x, jnp.zeros(x.shape[0], jnp.int32), x[:1], train=False)
    else:
      variables = self.model.init(key, x, train=False)
    params = variables["params"]
    labels = self.labels(params)
    inner_lr = {}
    # Learned step sizes: Meta-SGD's one per parameter, or MAML++'s one per layer and step.
    if self.algorithm == "metasgd" or self.inner_lr_mode != "fixed":
      fast, _ = partition.split(params, labels, bool)
      if self.inner_lr_mode == "per_layer_step":
        make = lambda p: jnp.full((max(self.inner_steps, 1),), self.inner_lr)
      else:
        make = lambda p: jnp.full(p.shape, self.inner_lr)
      inner_lr = jax.tree_util.tree_map(make, fast)
    return {"params": params, "inner_lr": inner_lr}, variables.get("batch_stats", {})

  def labels(self, params):
    table = self.inner_table
    if table == MAML_TABLE and not any(re.search(BATCH_NORM, p) for p in partition.flatten(params)):
      table = ADAPT_ALL  # no batch norm to leave alone
    return partition.label_params(params, table)

  # ---- forward and losses -----------------------------------------------------------
  def apply(self, params, batch_stats, x, support_x=None):
    """Outputs for `x`; `support_x`: the task's support set when `x` is its queries."""
    if not batch_stats:
      return self.model.apply({"params": params}, x, train=self.batch_norm != "running")
    if self.batch_norm == "support" and support_x is not None:
      stats = batch_statistics(self.model, params, batch_stats, support_x)
      return self.model.apply({"params": params, "batch_stats": stats}, x, train=False)
    if self.batch_norm == "running":
      return self.model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
    # The statistics of this batch; the updated running averages are discarded.
    out, _ = self.model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                              mutable=["batch_stats"])
    return out

  def loss_and_metric(self, params, batch_stats, x, y, support_x=None):
    """(mean loss, accuracy or MSE) of `params` on one task's examples (its queries if
    `support_x` is given)."""
    out = self.apply(params, batch_stats, x, support_x)
    if self.loss == "mse":
      mse = jnp.mean(jnp.square(out - y))
      return mse, mse
    loss = optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
    return loss, jnp.mean(jnp.argmax(out, -1) == y)

  # ---- the inner loop ---------------------------------------------------------------
  def adapt(self, meta_params, batch_stats, x, y, steps: int, query=None, lr=None,
            backtrack: bool = False):
    """phi = adapt(theta, D^tr): `steps` gradient steps on (x, y) for the adapted leaves.

    Returns (phi, per-step query metrics of shape (steps + 1,) or None). `lr` overrides
    a fixed inner step size (test time). `backtrack` (test time only: a while loop has no
    reverse-mode gradient) halves a step that does not lower the support loss, up to
    `MAX_HALVINGS` times: a step size at the edge of stability then cannot blow up on
    one task (seen: 1 of 600 sinusoid tasks, MSE 8.4 -> 4e5 -> nan at MAML's alpha).
    """
    params = meta_params["params"]
    fast, slow = partition.split(params, self.labels(params), bool)
    learned = meta_params["inner_lr"]
    alpha = self.inner_lr if lr is None else lr
    support_loss = lambda f: self.loss_and_metric(partition.merge(f, slow), batch_stats, x, y)[0]

    def step(fast, t):
      loss, grads = jax.value_and_grad(support_loss)(fast)
      if self.first_order:
        grads = jax.lax.stop_gradient(grads)
      if not learned:
        rate = jax.tree_util.tree_map(lambda p: alpha, fast)
      elif self.inner_lr_mode == "per_layer_step":
        last = jax.tree_util.tree_leaves(learned)[0].shape[0] - 1
        rate = jax.tree_util.tree_map(lambda a: a[jnp.minimum(t, last)], learned)
      else:
        rate = learned
      move = lambda scale: jax.tree_util.tree_map(lambda p, g, a: p - scale * a * g, fast,
                                                  grads, rate)
      if not backtrack:
        return move(1.0)
      too_far = lambda scale: (~(support_loss(move(scale)) <= loss)  # nan is too far
                               & (scale > 2.0 ** -MAX_HALVINGS))
      return move(jax.lax.while_loop(too_far, lambda scale: scale / 2, jnp.float32(1.0)))

    if self.remat:
      step = jax.checkpoint(step)
    metric = lambda f: self.loss_and_metric(partition.merge(f, slow), batch_stats, *query, x)[1]

    def body(fast, t):
      before = metric(fast) if query is not None else None
      return step(fast, t), before

    fast, before = jax.lax.scan(body, fast, jnp.arange(steps))
    phi = partition.merge(fast, slow)
    if query is None:
      return phi, None
    return phi, jnp.concatenate([before.reshape(steps), metric(fast)[None]])

  # ---- one task's training loss ----------------------------------------------------
  def task_loss(self, meta_params, batch_stats, task: Episodes):
    """(query loss after adaptation, query metric) of one task; differentiable in
    meta_params for every algorithm but Reptile (see `meta_gradients`)."""
    if self.algorithm in NO_INNER_LOOP:
      logits = self.query_logits(meta_params["params"], batch_stats, task.support_x,
                                 task.support_y, task.query_x)
      if self.algorithm == "relation":  # Sung et al.: sigmoid scores regressed on one-hot
        target = jax.nn.one_hot(task.query_y, logits.shape[-1], dtype=logits.dtype)
        loss = jnp.mean(jnp.square(jax.nn.sigmoid(logits) - target))
      else:
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, task.query_y).mean()
      return loss, jnp.mean(jnp.argmax(logits, -1) == task.query_y)
    steps = 0 if self.algorithm == "pretrain" else self.inner_steps
    phi, _ = self.adapt(meta_params, batch_stats, task.support_x, task.support_y, steps)
    return self.loss_and_metric(phi, batch_stats, task.query_x, task.query_y, task.support_x)

  def embed(self, params, batch_stats, support_x, query_x):
    """(support, query) embeddings, normalised as `batch_norm` says."""
    if self.batch_norm == "transductive":  # support and queries as one batch
      embed = self.apply(params, batch_stats, jnp.concatenate([support_x, query_x]))
      return embed[:support_x.shape[0]], embed[support_x.shape[0]:]
    return (self.apply(params, batch_stats, support_x),
            self.apply(params, batch_stats, query_x, support_x))

  def protonet_logits(self, params, batch_stats, support_x, support_y, query_x):
    """-squared distances of the query embeddings to the class means of the support's."""
    support, query = self.embed(params, batch_stats, support_x, query_x)
    return prototypes.logits(support, support_y, query, self.ways)

  def finetuned_protonet_logits(self, params, batch_stats, support_x, support_y, query_x):
    """ProtoNets' query logits after `support_steps` Adam steps on the support's
    cross-entropy, embedding and head trained (Proto-MAML's fine-tuning, Triantafillou et
    al. 2020, at test time only): the head starts as the prototypes' linear form,
    W_k = 2 c_k, b_k = -|c_k|^2, whose logits are -|f - c_k|^2 + |f|^2, so zero steps
    classify as ProtoNets do. The queries' labels are not used; their images normalise
    batch norm as in `embed`."""
    support, _ = self.embed(params, batch_stats, support_x, query_x)
    means = prototypes.class_means(support, support_y, self.ways)
    theta = {"params": params, "w": 2 * means.T, "b": -jnp.sum(jnp.square(means), -1)}
    logits = lambda t, which: (self.embed(t["params"], batch_stats, support_x, query_x)[which]
                               @ t["w"] + t["b"])
    loss = lambda t: optax.softmax_cross_entropy_with_integer_labels(
        logits(t, 0), support_y).mean()
    tx = optax.adam(self.support_lr)

    def step(carry, _):
      theta, state = carry
      updates, state = tx.update(jax.grad(loss)(theta), state, theta)
      return (optax.apply_updates(theta, updates), state), None

    (theta, _), _ = jax.lax.scan(step, (theta, tx.init(theta)), None,
                                 length=self.support_steps)
    return logits(theta, 1)

  def task_model_logits(self, params, support_x, support_y, query_x):
    """The query logits of a model's one forward pass over the task (`TASK_MODELS`)."""
    return self.model.apply({"params": params}, support_x, support_y, query_x, train=True)

  def query_logits(self, params, batch_stats, support_x, support_y, query_x):
    """The query outputs of a task from `params` (already adapted, for the MAML family)."""
    if self.algorithm == "protonet":
      return self.protonet_logits(params, batch_stats, support_x, support_y, query_x)
    if self.algorithm in TASK_MODELS:
      return self.task_model_logits(params, support_x, support_y, query_x)
    return self.apply(params, batch_stats, query_x, support_x)

  def test_logits(self, params, batch_stats, support_x, support_y, query_x):
    """`query_logits` at test time: ProtoNets' after fine-tuning on the support when
    `support_steps` > 0 (a test-time setting: training never fine-tunes)."""
    if self.support_steps:
      return self.finetuned_protonet_logits(params, batch_stats, support_x, support_y, query_x)
    return self.query_logits(params, batch_stats, support_x, support_y, query_x)

  # ---- the meta-batch --------------------------------------------------------------
  def over_tasks(self, fn, episodes: Episodes):
    """fn over the leading task axis: vmap, lax.map (a compiled loop), or an unrolled loop."""
    if self.task_batching == "vmap":
      return jax.vmap(fn)(episodes)
    if self.task_batching == "map":
      return jax.lax.map(fn, episodes)
    outs = [fn(jax.tree_util.tree_map(lambda a: a[i], episodes))
            for i in range(episodes.support_x.shape[0])]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)

  def meta_gradients(self, meta_params, batch_stats, episodes: Episodes):
    """(mean query loss, mean query metric), gradients w.r.t. meta_params."""
    if self.algorithm == "reptile":
      def one(task):
        x = jnp.concatenate([task.support_x, task.query_x])
        y = jnp.concatenate([task.support_y, task.query_y])
        phi, _ = self.adapt(meta_params, batch_stats, x, y, self.inner_steps)
        loss, metric = self.loss_and_metric(phi, batch_stats, task.query_x, task.query_y,
                                            task.support_x)
        return phi, loss, metric
      phis, losses, metrics = self.over_tasks(one, episodes)
      mean_phi = jax.tree_util.tree_map(lambda p: p.mean(0), phis)
      grads = {"params": jax.tree_util.tree_map(jnp.subtract, meta_params["params"], mean_phi),
               "inner_lr": jax.tree_util.tree_map(jnp.zeros_like, meta_params["inner_lr"])}
      return (losses.mean(), metrics.mean()), grads

    def mean_loss(mp):
      losses, metrics = self.over_tasks(lambda t: self.task_loss(mp, batch_stats, t), episodes)
      return losses.mean(), metrics.mean()

    (loss, metric), grads = jax.value_and_grad(mean_loss, has_aux=True)(meta_params)
    return (loss, metric), grads

  def evaluate_tasks(self, meta_params, batch_stats, episodes: Episodes, steps: int, lr=None,
                     backtrack: bool = False):
    """Query metric of each task after 0..steps adaptation steps: (B, steps + 1)."""
    def one(task):
      if self.algorithm in NO_INNER_LOOP:  # no steps: the same at every count
        logits = self.test_logits(meta_params["params"], batch_stats, task.support_x,
                                  task.support_y, task.query_x)
        metric = jnp.mean(jnp.argmax(logits, -1) == task.query_y)
        return jnp.full((steps + 1,), metric)
      _, per_step = self.adapt(meta_params, batch_stats, task.support_x, task.support_y, steps,
                               query=(task.query_x, task.query_y), lr=lr, backtrack=backtrack)
      return per_step
    return self.over_tasks(one, episodes)
