"""Transfer vs multi-task learning vs the target alone, with equal budgets:
`python -m experiments.multitask --config=experiments/configs/multitask.py:digits --workdir=DIR`
(reuses the finished transfer runs of a surgical sweep in the same DIR)."""
import functools

from experiments import launch
from jaxtl.studies.surgical.digits import sweep

if __name__ == "__main__":
  launch.run(functools.partial(sweep, multitask=True))
