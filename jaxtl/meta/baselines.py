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
from jaxtl.meta.algorithms import ADAPT_ALL, MetaLearner

BASELINES = ("ncm", "linear_probe", "cosine", "finetune", "lp_ft")
HEAD_ONLY = ((r"^head/", True), (r".*", False))


@dataclasses.dataclass(frozen=True)
class Baseline:
  """`model`: the pre-trained network with a head of `ways` outputs (linear, or cosine
  for `cosine`); params passed to `evaluate_tasks` are the pre-trained ones (head aside)."""
  name: str
  model: nn.Module
  ways: int
  probe_steps: int = 0      # lp_ft: linear-probe steps before fine-tuning everything
  probe_lr: float = 1.0

  def __post_init__(self):
    if self.name not in BASELINES:
      raise ConfigError(f"Unknown baseline {self.name!r}; valid: {list(BASELINES)}.")

  def learner(self, table, **kw) -> MetaLearner:
    return MetaLearner(self.model, algorithm="maml", inner_table=table, batch_norm="running",
                       ways=self.ways, **kw)

  def embed(self, params, batch_stats, x):
    body = {k: v for k, v in params.items() if k != "head"}
    return self.model.clone(num_classes=0).apply({"params": body, "batch_stats": batch_stats},
                                                 x, train=False)

  def task_head(self, params, batch_stats, support_x, support_y):
    """The new head: class means of the support features (cosine) or zeros (linear)."""
    features = self.embed(params, batch_stats, support_x)
    one_hot = jax.nn.one_hot(support_y, self.ways)
    if self.name == "cosine":
      return {"kernel": (one_hot.T @ features / one_hot.sum(0)[:, None]).T}
    return {"kernel": jnp.zeros((features.shape[-1], self.ways), features.dtype),
            "bias": jnp.zeros((self.ways,), features.dtype)}

  def evaluate_tasks(self, params, batch_stats, episodes, steps: int, lr=None,
                     backtrack: bool = False):
    """Query accuracy of each task after 0..steps adaptation steps: (B, steps + 1)."""
    def one(task):
      if self.name == "ncm":
        learner = MetaLearner(self.model.clone(num_classes=0), algorithm="protonet",
                              batch_norm="running", ways=self.ways)
        body = {k: v for k, v in params.items() if k != "head"}
        logits = learner.protonet_logits(body, batch_stats, task.support_x, task.support_y,
                                         task.query_x)
        return jnp.full((steps + 1,), jnp.mean(jnp.argmax(logits, -1) == task.query_y))
      start = dict(params, head=self.task_head(params, batch_stats, task.support_x,
                                               task.support_y))
      meta_params = {"params": start, "inner_lr": {}}
      if self.name == "lp_ft":
        probe = self.learner(HEAD_ONLY).adapt(meta_params, batch_stats, task.support_x,
                                              task.support_y, self.probe_steps,
                                              lr=self.probe_lr, backtrack=backtrack)[0]
        meta_params = {"params": probe, "inner_lr": {}}
      table = ADAPT_ALL if self.name in ("finetune", "lp_ft") else HEAD_ONLY
      return self.learner(table).adapt(meta_params, batch_stats, task.support_x,
                                       task.support_y, steps, query=(task.query_x, task.query_y),
                                       lr=lr, backtrack=backtrack)[1]
    return jax.lax.map(one, episodes)  # one task at a time: fine-tuning 20-way 19-shot is large
