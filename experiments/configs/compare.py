"""Fine-tuning strategies compared under one budget (jaxtl.finetune.compare).

    python -m experiments.compare_finetune --config=experiments/configs/compare.py:digits \
        --workdir=runs/compare_digits

Variants:
  digits: embedded 8x8 digits, no download. Pre-train a ResNet on digits 0-4, fine-tune on
      digits 5-9 from 25 labelled examples (100 more held out for validation); 5
      pre-trainings, each strategy's learning rate tuned per pre-training.
  mnist: MNIST 0-4 -> 5-9 with 1000 target examples (needs the mirror or TFDS).
  torchvision: surgical fine-tuning of a torchvision / timm ResNet's weights, no source
      task: --config.pretrain.init_from=resnet18.pth (or .safetensors); all, head,
      block1..block4 and lp_ft, learning rate tuned, 2 seeds (finetune.py:torchvision has
      the preprocessing; --config.finetune.dataset names your target).
  quick, torchvision_quick: 2 strategies, 1 lr, 1 seed, a few steps (tests).
"""
import ml_collections

from experiments.configs import finetune
from jaxtl.errors import ConfigError


VARIANTS = ("digits", "mnist", "torchvision", "quick", "torchvision_quick")
SURGICAL_ROWS = (
    ("all", {"strategy": "full"}),
    ("head", {"strategy": "linear_probe"}),
    *((f"block{i}", {"strategy": "surgical", "blocks": (f"block{i}",)}) for i in range(1, 5)),
    ("lp_ft", {"strategy": "lp_ft"}),
)


def get_config(variant: str = "digits") -> ml_collections.ConfigDict:
  if variant not in VARIANTS:
    raise ConfigError(f"Unknown variant {variant!r}; valid: {', '.join(VARIANTS)}.")
  c = ml_collections.ConfigDict()
  if variant.startswith("torchvision"):  # imported weights: no source task to pre-train
    c.pretrain = finetune.get_config(variant)
    c.pretrain.dataset = ""
  else:
    c.pretrain = finetune.get_config(f"{variant}_source")
  c.finetune = finetune.get_config(variant)
  # Tuned per pre-training (jaxtl.finetune.tuning.tune): a pick on the edge of lr_grid
  # widens it by a decade within lr_limits (then 0, no update, where a pick is tuned),
  # then the half-decades around it are tried.
  c.lr_grid, c.lr_limits = (1e-3, 1e-2, 1e-1), (1e-7, 10.0)
  c.pretrain_seeds = (0, 1, 2, 3, 4)  # a pre-trained network each: the unit of the CIs
  c.seeds = (0,)                      # fine-tuning runs per pre-training (seed 100 p + s)
  # (label, overrides of the fine-tuning config), in the order of the results table.
  c.strategies = (
      ("full", {"strategy": "full"}),
      ("linear_probe", {"strategy": "linear_probe"}),
      ("lp_ft", {"strategy": "lp_ft"}),
      ("surgical_block1", {"strategy": "surgical", "blocks": ("block1",)}),
      ("surgical_block2", {"strategy": "surgical", "blocks": ("block2",)}),
      ("surgical_block3", {"strategy": "surgical", "blocks": ("block3",)}),
      ("freeze_first_1", {"strategy": "freeze_first_k", "freeze_k": 1}),
      ("layerwise_lr_0.3", {"strategy": "layerwise_lr", "lr_decay": 0.3}),
      ("l2sp", {"strategy": "l2sp"}),
  )
  if variant.startswith("torchvision"):
    c.lr_grid, c.strategies = (1e-4, 1e-3, 1e-2), SURGICAL_ROWS
    c.pretrain_seeds, c.seeds = (0,), (0, 1)  # one set of imported weights
  if variant in ("quick", "torchvision_quick"):
    c.lr_grid, c.seeds, c.pretrain_seeds = (1e-3,), (0,), (0,)
    c.strategies = ((("all", {"strategy": "full"}), SURGICAL_ROWS[3])
                    if variant == "torchvision_quick" else
                    (("full", {"strategy": "full"}), ("lp_ft", {"strategy": "lp_ft"})))
  return c
