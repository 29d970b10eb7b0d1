"""Accuracy against shots: transfer baselines and meta-learned checkpoints on the same
Omniglot tasks (jaxtl.studies.shots).

    python -m experiments.shots --config=experiments/configs/shots.py --workdir=results/shots \
        --config.tasks.data_dir=../shared/data

Variant `lake`: Lake et al.'s protocol (`meta.py:omniglot_20w1s_lake`): the classifier
pre-trained on the background alphabets but 5 held out for validation, scored on 20-way
1-shot tasks within one evaluation alphabet, support and query by different drawers.
Variant `quick`: a tiny network, a few tasks and steps, for tests.
"""
import ml_collections

from experiments.configs import finetune, meta
from jaxtl.errors import ConfigError


def get_config(variant: str = "omniglot") -> ml_collections.ConfigDict:
  if variant not in ("omniglot", "lake", "quick"):
    raise ConfigError(f"Unknown variant {variant!r}; valid: omniglot, lake, quick.")
  c = ml_collections.ConfigDict()
  # The benchmark: meta_eval's Omniglot tasks (MAML class split, eval_seed, 600 tasks).
  c.tasks = meta.get_config("omniglot_5w1s")
  c.tasks.num_val_classes = 100  # validation characters, out of the 1200 training ones
  c.ways = (5, 20)
  c.shots = (1, 2, 5, 10, 19)
  c.query = 1                    # per class: 19 shots leave one of Omniglot's 20
  c.val_tasks, c.val_seed = 100, 777
  # Run in this order, cheapest first; lp_ft probes with linear_probe's picks.
  c.baselines = ("ncm", "linear_probe", "cosine", "finetune", "lp_ft")
  c.steps = ml_collections.ConfigDict({"linear_probe": 100, "cosine": 100, "finetune": 10,
                                       "lp_ft": 10})
  c.lr_grid = ml_collections.ConfigDict({"linear_probe": (0.1, 1.0, 10.0),
                                         "cosine": (0.1, 1.0, 10.0),
                                         "finetune": (0.01, 0.1, 0.5),
                                         "lp_ft": (0.01, 0.1, 0.5)})
  # The classifier: MAML's network as the committed 5-way checkpoints have it.
  c.pretrain = finetune.get_config("digits_source")
  c.pretrain.classes, c.pretrain.num_val = (), 0
  c.pretrain.model = "conv4"
  c.pretrain.model_kwargs = ml_collections.ConfigDict(
      {"features": 64, "downsample": "stride", "pool": "flatten", "head": "linear"})
  c.pretrain.num_steps, c.pretrain.batch_size = 3000, 256  # 9 epochs of 83,600 images
  c.pretrain.learning_rate, c.pretrain.weight_decay = 1e-3, 0.0
  c.pretrain.log_every, c.pretrain.checkpoint_every = 100, 500
  # A finished pre-training run (experiments.pretrain, any objective) instead of the one
  # pre-trained here for the linear-head baselines; "" pre-trains `pretrain`.
  c.init_from = ""
  # Meta-learned checkpoints (label, folder), re-evaluated at each shot count.
  c.checkpoints = (("maml", "results/omniglot_5w1s_maml"),
                   ("maml_5shot", "results/omniglot_5w5s_maml"),
                   ("protonet", "results/omniglot_5w1s_protonet"),
                   ("protonet_5shot", "results/omniglot_5w5s_protonet"),
                   ("maml", "results/omniglot_20w1s_maml"),
                   ("protonet", "results/omniglot_20w1s_protonet"),
                   ("protonet_5shot", "results/omniglot_20w5s_protonet"))
  if variant == "lake":
    c.tasks = meta.get_config("omniglot_20w1s_lake")  # validation: 5 background alphabets
    c.ways, c.shots = (20,), (1,)
    c.checkpoints = (("protonet", "results/omniglot_lake_20w1s_protonet"),)
  if variant == "quick":
    c.tasks.eval_tasks, c.tasks.eval_batch = 10, 10
    c.ways, c.shots, c.val_tasks = (5,), (1,), 5
    c.steps = ml_collections.ConfigDict({"linear_probe": 3, "cosine": 3, "finetune": 2,
                                         "lp_ft": 2})
    c.lr_grid = ml_collections.ConfigDict({k: (0.5,) for k in c.steps})
    c.pretrain.model_kwargs.features = 8
    c.pretrain.num_steps, c.pretrain.batch_size = 4, 32
    c.pretrain.log_every = c.pretrain.checkpoint_every = 2
    c.checkpoints = ()
  return c
