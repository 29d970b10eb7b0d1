"""Fine-tuning strategies side by side:

    python -m experiments.compare_finetune --config=experiments/configs/compare.py:digits
        --workdir=DIR
"""
from experiments import launch
from jaxtl.finetune.compare import compare

if __name__ == "__main__":
  launch.run(compare)
