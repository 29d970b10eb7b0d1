"""jaxtl: transfer learning and meta-learning in JAX.

The library is layered; a module imports only from lower layers (and, within a package,
from its own modules), and no two modules import each other (`tests/test_layout.py`):

  0  errors, runtime
  1  cache, stats, state_dict, partition, sharding, data/, models/
  2  metrics, checkpoint, workdir
  3  loop               the training loop every trainer shares
  4  objectives/        pre-training losses
  5  finetune/, meta/   fine-tuning and meta-learning (neither imports the other)
  6  adapt, report
  7  studies/           the studies behind the published tables; nothing imports them
"""

__version__ = "0.1.0"
