"""Do you need labels to pre-train, and does pre-training data need to be diverse?

    python -m experiments.pretraining --config=experiments/configs/pretraining.py:labels \
        --workdir=results/pretraining_labels --config.data_dir=../shared/data
"""
from experiments import launch
from jaxtl.studies.pretraining.study import study

if __name__ == "__main__":
  launch.run(study)
