"""Pre-train:

    python -m experiments.pretrain --config=experiments/configs/finetune.py:VARIANT
        --workdir=DIR
"""
from experiments import launch
from jaxtl.finetune.trainer import train_and_evaluate

if __name__ == "__main__":
  launch.run(train_and_evaluate)
