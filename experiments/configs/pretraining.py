"""Pre-training without labels and from narrow data, on Omniglot (jaxtl.objectives.study).

    python -m experiments.pretraining --config=experiments/configs/pretraining.py:labels \
        --workdir=results/pretraining_labels --config.data_dir=../shared/data
    python -m experiments.pretraining --config=experiments/configs/pretraining.py:diversity \
        --workdir=results/pretraining_diversity --config.data_dir=../shared/data

Variants:
  labels:    every objective and no pre-training, on all 19,280 background drawings.
  diversity: the same number of drawings (280: the smallest alphabet's) from 1, 3, 10 or
             30 background alphabets, for each objective, 3 seeds.
  quick:     a tiny network, a few steps and tasks, for tests.
"""
import ml_collections

from experiments.configs import shots
from jaxtl.errors import ConfigError

VARIANTS = ("labels", "diversity", "quick")


def get_config(variant: str = "labels") -> ml_collections.ConfigDict:
  if variant not in VARIANTS:
    raise ConfigError(f"Unknown variant {variant!r}; valid: {', '.join(VARIANTS)}.")
  c = ml_collections.ConfigDict()
  c.data_dir, c.source, c.data_seed = "", "auto", 0
  c.objectives = ("scratch", "supervised", "rotation", "simclr", "mae")
  c.alphabets = (30,)
  c.num_images = 0          # drawings per pre-training set (0: every drawing of its alphabets)
  c.seeds = (0,)
  c.baselines = ("ncm", "linear_probe", "finetune")
  # The target: few-shot tasks of the evaluation alphabets (Lake's split), scored as the
  # shot sweep scores its baselines (steps and step size picked on validation characters).
  c.fewshot = shots.get_config("quick" if variant == "quick" else "omniglot")
  c.fewshot.tasks.class_split = "lake"
  c.fewshot.tasks.data_dir = c.get_ref("data_dir")
  c.fewshot.checkpoints = ()
  if variant != "quick":
    c.fewshot.ways, c.fewshot.shots = (5,), (1, 5)
  # MAML's network, pre-trained by the fine-tuning trainer with each objective.
  c.pretrain = c.fewshot.pretrain.copy_and_resolve_references()
  if variant != "quick":
    c.pretrain.num_steps, c.pretrain.batch_size = 2000, 128
  if variant == "diversity":
    c.objectives = ("supervised", "rotation", "simclr", "mae")
    c.alphabets, c.num_images, c.seeds = (1, 3, 10, 30), 280, (0, 1, 2)
  if variant == "quick":
    c.objectives = ("scratch", "rotation")
    c.alphabets, c.num_images, c.seeds = (1, 3), 100, (0,)
    c.baselines = ("ncm", "linear_probe")
  return c
