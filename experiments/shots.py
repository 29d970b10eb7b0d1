"""Accuracy against the number of shots, transfer baselines against meta-learning:

    python -m experiments.shots --config=experiments/configs/shots.py --workdir=results/shots
"""
from experiments import launch
from jaxtl.studies.shots import run

if __name__ == "__main__":
  launch.run(run)
