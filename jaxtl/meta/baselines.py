"""Transfer baselines on episodic tasks: one classifier pre-trained on the meta-training
classes, adapted per test task from that task's support set only.

A `Baseline` has `MetaLearner.evaluate_tasks`'s signature, so `jaxtl.meta.train.
evaluate_per_task` scores it on exactly the tasks `meta_eval` draws (class split, eval
seed, chunks) and returns its query accuracy after each step 0..steps at once: the
number of steps is picked on validation tasks together with the step size, from one
evaluation per step size. Batch norm uses the pre-trained running averages throughout.

| baseline       | per task, from the support set                                      |
|----------------|---------------------------------------------------------------------|
| `ncm`          | nearest class mean of the frozen features (no steps)                |
| `linear_probe` | a zero-initialised linear head, frozen features (Chen et al.'s Baseline) |
| `cosine`       | a cosine head initialised at the class means, frozen features, on a  |
|                | network pre-trained with a cosine head (Baseline++)                  |
| `finetune`     | every weight, with a zero-initialised linear head                   |
| `lp_ft`        | `probe_steps` of the linear probe, then every weight                |

Steps are full-batch gradient steps on the mean support loss (MAML's inner loop), each
halved until it lowers the support loss when `backtrack` is set.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtl.errors import ConfigError
from jaxtl.meta import prototypes
from jaxtl.meta.algorithms import ADAPT_ALL, MetaLearner
from jaxtl.models.layers import CosineHead

BASELINES = ("ncm", "linear_probe", "cosine", "finetune", "lp_ft")


class Head(nn.Module):
  """The classifier alone, on features: what a head-only baseline adapts (the frozen
  body's features are computed once per task, not at every step)."""
  ways: int
  kind: str = "linear"    # linear | cosine
  scale: float = 10.0

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.kind == "cosine":
      return CosineHead(self.ways, self.scale, name="head")(x)
    return nn.Dense(self.ways, name="head")(x)


@dataclasses.dataclass(frozen=True)
class Baseline:
  """`model`: the pre-trained network with a head of `ways` outputs (`head="cosine"` for
  `cosine`); `evaluate_tasks` takes its pre-trained params (their head is replaced)."""
  name: str
  model: nn.Module
  ways: int
  probe_steps: int = 0      # lp_ft: linear-probe steps before fine-tuning everything
  probe_lr: float = 1.0

  def __post_init__(self):
    if self.name not in BASELINES:
      raise ConfigError(f"Unknown baseline {self.name!r}; valid: {list(BASELINES)}.")

  def _learner(self, model) -> MetaLearner:
    return MetaLearner(model, algorithm="maml", inner_table=ADAPT_ALL, batch_norm="running",
                       ways=self.ways)

  def evaluate_tasks(self, params, batch_stats, episodes, steps: int, lr=None,
                     backtrack: bool = False):
    """Query accuracy of each task after 0..steps adaptation steps: (B, steps + 1)."""
    body = {k: v for k, v in params.items() if k != "head"}
    embed = lambda x: self.model.clone(num_classes=0).apply(
        {"params": body, "batch_stats": batch_stats}, x, train=False)
    kind = "cosine" if self.name == "cosine" else "linear"
    head = Head(self.ways, kind, getattr(self.model, "cosine_scale", 10.0))

    def one(task):
      support, query = embed(task.support_x), embed(task.query_x)
      if self.name == "ncm":
        logits = prototypes.logits(support, task.support_y, query, self.ways)
        return jnp.full((steps + 1,), jnp.mean(jnp.argmax(logits, -1) == task.query_y))
      if kind == "cosine":  # Baseline++ starts at the class means (cosine NCM)
        start = {"kernel": prototypes.class_means(support, task.support_y, self.ways).T}
      else:
        start = {"kernel": jnp.zeros((support.shape[-1], self.ways), support.dtype),
                 "bias": jnp.zeros((self.ways,), support.dtype)}
      on_features = {"params": {"head": start}, "inner_lr": {}}
      if self.name in ("linear_probe", "cosine"):
        return self._learner(head).adapt(on_features, {}, support, task.support_y, steps,
                                         query=(query, task.query_y), lr=lr,
                                         backtrack=backtrack)[1]
      if self.name == "lp_ft":
        probed = self._learner(head).adapt(on_features, {}, support, task.support_y,
                                           self.probe_steps, lr=self.probe_lr,
                                           backtrack=backtrack)[0]
        start = probed["head"]
      whole = {"params": dict(body, head=start), "inner_lr": {}}
      return self._learner(self.model).adapt(whole, batch_stats, task.support_x,
                                             task.support_y, steps,
                                             query=(task.query_x, task.query_y), lr=lr,
                                             backtrack=backtrack)[1]
    return jax.lax.map(one, episodes)  # a task at a time: 20-way 19-shot fine-tuning is large
