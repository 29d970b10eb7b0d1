"""Train / validation / test splits of an image dataset for (pre-)training and fine-tuning."""
import numpy as np

from jaxtl.data import load_dataset
from jaxtl.data.datasets import stratified_take  # pylint: disable=unused-import
from jaxtl.errors import ConfigError


def make_splits(config):
  """(train, val, test) ImageDatasets per `config`: dataset, classes, num_train, num_val.

  The validation split is held out from the training split (never from test), with
  a fixed seed (`config.data_seed`), so every strategy sees the same examples.
  """
  kwargs = dict(data_dir=config.data_dir, source=config.source,
                channels=config.get("folder_channels", 1),
                polarity=config.get("folder_polarity", "auto"),  # configs saved before
                size=config.get("folder_size", 0) or None)       # these fields: defaults
  train = load_dataset(config.dataset, config.train_split, **kwargs)
  test = load_dataset(config.dataset, config.test_split, **kwargs)
  if config.classes:
    train = train.select_classes(list(config.classes))
    test = test.select_classes(list(config.classes))
  return split_train_val(train, config.num_train, config.num_val, config.data_seed) + (test,)


def split_train_val(train, num_train: int, num_val: int, seed: int):
  """(train, val): `num_train` (0: all but val) and `num_val` class-balanced examples,
  disjoint, drawn with `seed`."""
  rng = np.random.default_rng(seed)
  num_train = num_train or (len(train) - num_val)
  if num_train + num_val > len(train):
    raise ConfigError(f"num_train={num_train} + num_val={num_val} exceeds the {len(train)} "
                      f"training examples of {train.name}.")
  train_index = stratified_take(train.labels, num_train, rng)
  rest = np.setdiff1d(np.arange(len(train)), train_index)
  val_index = rest[stratified_take(train.labels[rest], num_val, rng)] if num_val else rest[:0]
  return train.subset(np.sort(train_index)), train.subset(np.sort(val_index))
