"""Transfer vs multi-task vs meta-learning on sinusoids (jaxtl.studies.lecture), no download.

    python -m experiments.lecture --config=experiments/configs/lecture.py --workdir=runs/lecture

Expected (Finn et al. 2017, appendix Table 2): MAML 0.67 / 0.38 / 0.35 after 1 / 5 / 10
steps; pre-training then fine-tuning 2.41 / 2.23 / 2.19.
Variant `quick`: a few hundred iterations, for tests.
"""
import ml_collections

from experiments.configs import meta
from jaxtl.errors import ConfigError


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  if variant not in ("default", "quick"):
    raise ConfigError(f"Unknown variant {variant!r}; valid: default, quick.")
  c = ml_collections.ConfigDict()
  c.maml = meta.get_config("sinusoid")
  c.maml.num_steps = 70000  # as in the MAML code
  c.maml.test_backtrack = True  # fine-tuning at test time cannot blow up (jaxtl.studies.lecture)
  c.finetune_lr_grid = (0.001, 0.003, 0.01, 0.03, 0.1)
  c.val_seed = 777              # validation tasks for the fine-tuning step size
  # Test tasks: maml.eval_seed (all three methods are evaluated on the same tasks).
  c.multitask_tasks = 1000       # size of the fixed task pool with one head each
  c.multitask_pool_seed = 99
  if variant == "quick":
    c.maml.num_steps, c.maml.steps_per_call = 200, 100
    c.maml.log_every = c.maml.checkpoint_every = 100
    c.maml.eval_tasks = 50
    c.finetune_lr_grid = (0.01, 0.03)
    c.multitask_tasks = 50
  return c
