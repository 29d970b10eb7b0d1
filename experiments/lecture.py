"""Transfer vs multi-task vs meta-learning on sinusoids, one table:

    python -m experiments.lecture --config=experiments/configs/lecture.py --workdir=DIR
"""
from experiments import launch
from jaxtl.studies.lecture import run

if __name__ == "__main__":
  launch.run(run)
