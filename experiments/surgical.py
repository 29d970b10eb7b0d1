"""Surgical fine-tuning under input / feature / output shifts:

    python -m experiments.surgical --config=experiments/configs/surgical.py:digits
        --workdir=DIR
"""
from experiments import launch
from jaxtl.finetune.surgical import sweep

if __name__ == "__main__":
  launch.run(sweep)
