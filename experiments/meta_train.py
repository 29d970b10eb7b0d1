"""Meta-train and evaluate:

    python -m experiments.meta_train --config=experiments/configs/meta.py:VARIANT
        --workdir=DIR
"""
from experiments import launch
from jaxtl.meta.train import train_and_evaluate

if __name__ == "__main__":
  launch.run(train_and_evaluate)
