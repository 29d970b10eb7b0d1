"""Transfer vs multi-task learning vs the target alone on the shift benchmarks.

    python -m experiments.multitask --config=experiments/configs/multitask.py:digits \
        --workdir=runs/surgical_digits

Variants:
  digits: embedded 8x8 digits (no download), ResNet; 300 target examples + 100 for
      validation; 3 pre-trainings, each row's learning rate tuned per pre-training.
  mnist: MNIST, 1000 target examples as in the paper (mirror or TFDS); a lower
      starting grid (on MNIST 3e-3 and 1e-2 often collapsed to chance).
  quick: three strategies, one lr, one seed, a few steps (tests).
`python -m experiments.multitask` takes the same configs and adds the equal-budget
baselines (target only; multi-task on source + target).
Tuning a single block is `block1` ... `block3` or `head` (= linear probe); batch norm in
eval mode while fine-tuning, as in the paper's code.
"""
import ml_collections

from experiments.configs import finetune
from jaxtl.errors import ConfigError


def get_config(variant: str = "digits") -> ml_collections.ConfigDict:
  if variant not in ("digits", "mnist", "quick"):
    raise ConfigError(f"Unknown variant {variant!r}; valid: digits, mnist, quick.")
  c = ml_collections.ConfigDict()
  c.dataset = "mnist" if variant == "mnist" else "digits"
  c.data_dir, c.source = "", "auto"
  c.shifts = ("input", "feature", "output")
  c.corruption, c.shift_seed = "gaussian_noise", 0
  c.num_train, c.num_val = (1000, 500) if variant == "mnist" else (300, 100)
  c.pretrain = finetune.base()
  c.pretrain.num_val = 200
  c.pretrain.num_steps = 3000 if variant == "mnist" else 600
  c.pretrain.checkpoint_every = 1000
  c.finetune = finetune.base()
  c.finetune.batch_norm = "frozen"
  c.finetune.batch_size, c.finetune.num_steps = 50, 150
  c.finetune.log_every = c.finetune.checkpoint_every = 150
  c.task_weights = (1.0, 1.0)   # multi-task baseline: (target, source)
  # Tuned per pre-training (jaxtl.finetune.tuning.tune): a pick on the edge of lr_grid
  # widens it by a decade within lr_limits (then 0, no update, where a pick is tuned),
  # then the half-decades around it are tried.
  c.lr_grid = (1e-4, 1e-3, 1e-2) if variant == "mnist" else (1e-3, 1e-2, 1e-1)
  c.lr_limits = (1e-7, 10.0)
  c.pretrain_seeds = (0, 1, 2)  # a pre-trained network each: the unit of the CIs
  c.seeds = (0,)                # fine-tuning runs per pre-training (seed 100 p + s)
  c.strategies = (
      ("block1", {"strategy": "surgical", "blocks": ("block1",)}),
      ("block2", {"strategy": "surgical", "blocks": ("block2",)}),
      ("block3", {"strategy": "surgical", "blocks": ("block3",)}),
      ("head", {"strategy": "linear_probe"}),
      ("all", {"strategy": "full"}),
      ("lp_ft", {"strategy": "lp_ft"}),
      ("auto_rgn", {"strategy": "auto_rgn"}),
      ("auto_snr", {"strategy": "auto_snr"}),
  )
  if variant == "quick":
    for cfg in (c.pretrain, c.finetune):
      cfg.model_kwargs.widths = (4, 8, 8)
      cfg.num_steps, cfg.log_every, cfg.checkpoint_every = 4, 2, 2
    c.num_train, c.num_val, c.pretrain.num_val = 40, 20, 20
    c.lr_grid, c.seeds, c.pretrain_seeds = (1e-2,), (0,), (0,)
    c.strategies = c.strategies[:1] + c.strategies[6:7]
  return c
