"""Surgical fine-tuning and LP-FT on real shifts, each strategy's grid one compiled program:

    python -m experiments.surgical --config=experiments/configs/surgical.py:VARIANT \
        --workdir=DIR [--config.data_dir=../shared/data]

(variants in experiments/configs/surgical.py; rerunning the command resumes in DIR).
"""
from experiments import launch
from jaxtl.studies.surgical.study import study

if __name__ == "__main__":
  launch.run(study)
