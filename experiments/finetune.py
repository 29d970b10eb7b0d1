"""Fine-tune:

    python -m experiments.finetune --config=experiments/configs/finetune.py:VARIANT
        --workdir=DIR --config.init_from=PRETRAIN_DIR --config.strategy=...
"""
from experiments import launch
from jaxtl.finetune.trainer import train_and_evaluate

if __name__ == "__main__":
  launch.run(train_and_evaluate)
