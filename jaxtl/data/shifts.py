"""Distribution-shift benchmarks in the manner of surgical fine-tuning (Lee et al. 2023).

`make_shift(name, dataset, ...)` returns a `ShiftTask`: a source task (pre-training)
and a target task (fine-tuning), each with train and test splits, built reproducibly
from a seed:

  * `input`  (input-level, like MNIST-C / CIFAR-10-C): the target's images are corrupted
    (`CORRUPTIONS`, severity 1..5); labels unchanged.
  * `feature` (feature-level, like BREEDS Living-17 / Entity-30): classes are made of
    subclasses; source and target see disjoint subclasses of every class. Digits and
    MNIST: digit d belongs to class d % 5, the source sees digits 0-4 and the target 5-9.
    Omniglot: each alphabet is a class; source and target see disjoint characters.
  * `output` (output-level, like CIFAR-Flip): the target relabels the same images by a
    fixed seeded permutation of the classes with no fixed point; images unchanged.

Input and output shifts share their source task (the clean, original labelling).
"""
import dataclasses

import numpy as np

from jaxtl.data.datasets import ImageDataset, load_dataset
from jaxtl.errors import ConfigError

SHIFTS = ("input", "feature", "output")
CORRUPTIONS = ("gaussian_noise", "impulse_noise", "blur", "contrast", "inversion", "fog")


@dataclasses.dataclass(frozen=True)
class ShiftTask:
  name: str
  source_train: ImageDataset
  source_test: ImageDataset
  target_train: ImageDataset
  target_test: ImageDataset
  num_classes: int
  source_key: str  # shifts with equal source_key share their source task


def _blur(images, sigma):
  radius = max(int(3 * sigma), 1)
  t = np.arange(-radius, radius + 1)
  kernel = np.exp(-0.5 * (t / sigma) ** 2)
  kernel /= kernel.sum()
  out = images
  for axis in (1, 2):  # separable Gaussian, edges padded by reflection
    pad = [(0, 0)] * 4
    pad[axis] = (radius, radius)
    padded = np.pad(out, pad, mode="reflect")
    out = sum(w * np.take(padded, np.arange(i, i + images.shape[axis]), axis=axis)
              for i, w in enumerate(kernel))
  return out


def corrupt(images: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
  """Corrupted copy of float images in [0, 1] (N, H, W, C); deterministic for a seed."""
  if corruption not in CORRUPTIONS:
    raise ConfigError(f"Unknown corruption {corruption!r}; valid: {CORRUPTIONS}.")
  if severity not in (1, 2, 3, 4, 5):
    raise ConfigError(f"severity={severity}; valid: 1..5.")
  rng = np.random.default_rng(seed)
  s = severity - 1
  if corruption == "gaussian_noise":
    out = images + rng.normal(size=images.shape) * [0.08, 0.12, 0.18, 0.26, 0.38][s]
  elif corruption == "impulse_noise":
    amount = [0.03, 0.06, 0.09, 0.17, 0.27][s]
    u = rng.random(images.shape)
    out = np.where(u < amount / 2, 0.0, np.where(u > 1 - amount / 2, 1.0, images))
  elif corruption == "blur":
    out = _blur(images, [0.4, 0.6, 0.8, 1.0, 1.3][s] * images.shape[1] / 28 * 1.5)
  elif corruption == "contrast":
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    out = (images - mean) * [0.4, 0.3, 0.2, 0.1, 0.05][s] + mean
  elif corruption == "inversion":
    out = 1.0 - images
  else:  # fog: an additive smooth random field
    h, w = images.shape[1:3]
    coarse = rng.random((len(images), 4, 4, 1))
    field = np.kron(coarse, np.ones((1, -(-h // 4), -(-w // 4), 1)))[:, :h, :w]
    out = images + _blur(field, 1.0) * [0.3, 0.45, 0.6, 0.75, 0.9][s]
  return np.clip(out, 0.0, 1.0).astype(np.float32)


def _derangement(n: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  while True:
    perm = rng.permutation(n)
    if not np.any(perm == np.arange(n)):
      return perm


def _relabel(ds: ImageDataset, labels: np.ndarray) -> ImageDataset:
  return dataclasses.replace(ds, labels=labels.astype(np.int32))


def _load(dataset, data_dir, source):
  if dataset == "omniglot":
    every = load_dataset("omniglot", "all", data_dir=data_dir, source=source)
    # Omniglot has no train/test split of drawings: the first 15 drawers train, 5 test.
    if "drawer" not in every.metadata:
      raise ConfigError(
          f"Omniglot shifts split drawings by drawer, which {every.source or 'this source'} "
          f"does not record (it has {sorted(every.metadata)}). Use the mirror: source='mirror' "
          f"and a data_dir holding omniglot/omniglot_28.npz.")
    drawer = every.metadata["drawer"]
    return every.subset(drawer < 15), every.subset(drawer >= 15)
  return (load_dataset(dataset, "train", data_dir=data_dir, source=source),
          load_dataset(dataset, "test", data_dir=data_dir, source=source))


def make_shift(name: str, dataset: str = "digits", *, data_dir: str = "", source: str = "auto",
               corruption: str = "gaussian_noise", severity: int = 5, seed: int = 0,
               omniglot_alphabets: int = 10) -> ShiftTask:
  """The source and target tasks of shift `name` on `dataset` (module docstring)."""
  if name not in SHIFTS:
    raise ConfigError(f"Unknown shift {name!r}; valid shifts: {SHIFTS}.")
  train, test = _load(dataset, data_dir, source)
  if dataset == "omniglot":  # classes = alphabets; only the first `omniglot_alphabets`
    keep = lambda ds: ds.subset(ds.metadata["alphabet"] < omniglot_alphabets)
    train, test = keep(train), keep(test)
    superclass = lambda ds: ds.metadata["alphabet"]
    # Characters of an alphabet alternate between source (even) and target (odd).
    is_source = lambda ds: (ds.labels % 2) == 0
    num_classes = omniglot_alphabets
    clean = lambda ds: _relabel(ds, superclass(ds))
  else:
    num_classes = train.num_classes
    superclass = lambda ds: ds.labels % (num_classes // 2)
    is_source = lambda ds: ds.labels < num_classes // 2
    clean = lambda ds: ds
  if name == "feature":
    sub = lambda ds, src: _relabel(ds.subset(is_source(ds) == src),
                                   superclass(ds.subset(is_source(ds) == src)))
    classes = omniglot_alphabets if dataset == "omniglot" else num_classes // 2
    return ShiftTask(name, sub(train, True), sub(test, True), sub(train, False),
                     sub(test, False), classes, f"{dataset}:feature")
  source_train, source_test = clean(train), clean(test)
  if name == "input":
    target = lambda ds, k: dataclasses.replace(ds, images=corrupt(ds.images, corruption,
                                                                   severity, seed + k))
  else:
    perm = _derangement(num_classes, seed)
    target = lambda ds, k: _relabel(ds, perm[ds.labels])
  return ShiftTask(name, source_train, source_test, target(source_train, 1),
                   target(source_test, 2), num_classes, f"{dataset}:clean")
