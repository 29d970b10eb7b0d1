"""A user's own corruption, registered on import: `--config.imports=tests.user_corruption`
then `--config.shifts=input:digits:checkerboard` (tests/test_experiments.py)."""
import numpy as np

from jaxtl.data.corruptions import register_corruption


def checkerboard(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Adds a checkerboard of random phase per image."""
  h, w = images.shape[1:3]
  phase = rng.integers(0, 2, (len(images), 1, 1, 1))
  board = (np.add.outer(np.arange(h), np.arange(w))[None, :, :, None] + phase) % 2
  return images + 0.5 * board


register_corruption("checkerboard", checkerboard, overwrite=True)
