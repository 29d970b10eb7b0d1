"""Distribution-shift benchmarks in the manner of surgical fine-tuning (Lee et al. 2023).

`make_shift(name, dataset, ...)` returns a `ShiftTask`: a source task (pre-training)
and a target task (fine-tuning), each with train and test splits, built reproducibly
from a seed:

  * `input` (input-level, like MNIST-C / CIFAR-10-C): the target is a corrupted copy of
    the clean data (`jaxtl.data.corruptions`: any name of `corruption_names()`, train and
    test corrupted with different seeds); same examples, same labels.
  * `natural` (input-level, a natural shift): MNIST -> USPS. The source is clean MNIST,
    the target USPS brought to 28x28 by `usps_to_28` (`usps_resize`, default MNIST's
    20x20 box with a 4-pixel margin). USPS is read from its mirror, its only source.
  * `feature` (feature-level, the BREEDS idea of Living-17 / Entity-30: the same
    superclasses, made of disjoint subpopulations): labels are superclasses; the source
    sees one subclass of every superclass, the target another. Digits and MNIST: digit d
    belongs to superclass d % 5, the source sees digits 0-4 and the target 5-9.
    Fashion-MNIST (`FASHION_SUPERCLASSES`; superclass: source class / target class):
      0 tops:          T-shirt/top 0 / Shirt 6
      1 outerwear:     Pullover 2    / Coat 4
      2 long garments: Trouser 1     / Dress 3
      3 low shoes:     Sandal 5      / Sneaker 7
      4 bags & boots:  Bag 8         / Ankle boot 9
    Omniglot: each alphabet is a class; source and target see disjoint characters.
  * `output` (output-level, like CIFAR-Flip): the target relabels the same images by a
    fixed seeded permutation of the classes with no fixed point; images unchanged.
  * `spurious` (a nuisance feature, in the manner of Waterbirds, Sagawa et al. 2020): a
    bright square patch (4x4 at 28x28, 2x2 at 8x8) sits at one of `num_classes` fixed,
    non-overlapping positions on the image border (`patch_positions`). In the source
    (train and test) the position is the label's with probability `spurious_correlation`,
    else a uniformly random other one; in the target it is uniformly random, independent
    of the label. Patch pixels are set to 1 (ink, so the
    same as max(image, 1)); every other pixel and every label is the clean data's. Each
    split records the position index as metadata "nuisance": worst-group accuracy groups
    examples by (label, nuisance == label).

  * `lpft` (Kumar et al. 2022's LP-FT question): the source is the feature shift's (half
    the classes), the target every class of the clean data.

Input, natural and output shifts share their source task, the clean data
(`source_key` "<dataset>:clean"); a spurious source depends on the correlation and the
seed ("<dataset>:spurious:<correlation>:seed<seed>").

`target_pool=N` holds N training images (class-balanced, drawn with a fixed seed) out of
every source: the input, output, spurious and LP-FT targets are made from those images
only, so fine-tuning never sees (a transformed copy of) an image the source model was
trained on, as Lee et al. build CIFAR-10-C's targets from images outside pre-training.
0 keeps the earlier construction (targets from the source's own training images).
"""
import dataclasses
from typing import Optional

import numpy as np

from jaxtl.data.corruptions import corrupt, corruption_names
from jaxtl.data.datasets import (USPS_RESIZES, ImageDataset, load_dataset, stratified_take,
                                  usps_to_28)
from jaxtl.errors import ConfigError

SHIFTS = ("input", "natural", "feature", "output", "spurious", "lpft")
POOL_SEED = 20_231  # the target pool's draw: fixed, so every study shares one pool
DATASETS = ("digits", "mnist", "fashion_mnist", "omniglot")
NATURAL_DATASETS = ("mnist",)  # MNIST -> USPS
# Fashion-MNIST superclasses for the feature shift: (name, source class, target class).
FASHION_SUPERCLASSES = (("tops", 0, 6),           # T-shirt/top, Shirt
                        ("outerwear", 2, 4),      # Pullover, Coat
                        ("long garments", 1, 3),  # Trouser, Dress
                        ("low shoes", 5, 7),      # Sandal, Sneaker
                        ("bags & boots", 8, 9))   # Bag, Ankle boot


@dataclasses.dataclass(frozen=True)
class ShiftTask:
  name: str
  source_train: ImageDataset
  source_test: ImageDataset
  target_train: ImageDataset
  target_test: ImageDataset
  num_classes: int
  source_key: str  # shifts with equal source_key share their source task


def _derangement(n: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  while True:
    perm = rng.permutation(n)
    if not np.any(perm == np.arange(n)):
      return perm


def _relabel(ds: ImageDataset, labels: np.ndarray) -> ImageDataset:
  return dataclasses.replace(ds, labels=labels.astype(np.int32))


def patch_positions(height: int, width: int, num_classes: int):
  """(side, corners) of the spurious shift's patches: `corners` (num_classes, 2) top-left
  (row, column) of non-overlapping side x side squares on the image border.

  The side is 4 at 28x28 and scales with the image, but is at least 2: at 8x8 a single
  bright pixel looks like a stroke. The border is cut into non-overlapping tiles (7 per
  edge at 28x28, 24 around; 4 per edge at 8x8, 12 around), numbered clockwise from the top
  left, and class i gets tile floor(i * tiles / num_classes), spread evenly around.
  """
  side = max(2, round(4 * min(height, width) / 28))
  rows = np.round(np.linspace(0, height - side, height // side)).astype(int)
  cols = np.round(np.linspace(0, width - side, width // side)).astype(int)
  border = ([(0, c) for c in cols] + [(r, width - side) for r in rows[1:]] +
            [(height - side, c) for c in cols[-2::-1]] + [(r, 0) for r in rows[-2:0:-1]])
  if num_classes > len(border):
    raise ConfigError(f"The spurious shift puts one patch per class on the border: "
                      f"{num_classes} classes do not fit on {height}x{width} images "
                      f"({len(border)} positions of {side}x{side}).")
  tiles = [len(border) * i // num_classes for i in range(num_classes)]
  return side, np.asarray([border[t] for t in tiles], np.int32)


def _nuisance(labels: np.ndarray, num_classes: int, correlation: Optional[float],
              rng: np.random.Generator) -> np.ndarray:
  """Patch position per example: the label's with probability `correlation`, else a
  uniformly random other one; uniform and independent of the label when None."""
  if correlation is None:
    return rng.integers(0, num_classes, len(labels)).astype(np.int32)
  agree = rng.random(len(labels)) < correlation
  other = (labels + rng.integers(1, num_classes, len(labels))) % num_classes
  return np.where(agree, labels, other).astype(np.int32)


def _with_patches(ds: ImageDataset, nuisance: np.ndarray, side: int,
                  corners: np.ndarray) -> ImageDataset:
  images = ds.images.copy()
  for k, (r, c) in enumerate(corners):
    images[nuisance == k, r:r + side, c:c + side, :] = 1.0
  return dataclasses.replace(ds, images=images, metadata=dict(ds.metadata, nuisance=nuisance))


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


def _check(name, dataset, corruption, usps_resize, spurious_correlation):
  """Every argument, before any data is read."""
  if name not in SHIFTS:
    raise ConfigError(f"Unknown shift {name!r}; valid shifts: {SHIFTS}.")
  if dataset not in DATASETS:
    raise ConfigError(f"Unknown dataset {dataset!r} for shifts; valid datasets: {DATASETS}.")
  if name == "natural" and dataset not in NATURAL_DATASETS:
    raise ConfigError(f"The natural shift is MNIST -> USPS; dataset {dataset!r} is not valid "
                      f"for it; valid datasets: {NATURAL_DATASETS}.")
  names = corruption_names()  # read now: corruptions may be registered at run time
  if corruption not in names:
    raise ConfigError(f"Unknown corruption {corruption!r}; valid corruptions: {tuple(names)}.")
  if usps_resize not in USPS_RESIZES:
    raise ConfigError(f"Unknown usps_resize {usps_resize!r}; valid: {USPS_RESIZES}.")
  if not 0.0 <= spurious_correlation <= 1.0:
    raise ConfigError(f"spurious_correlation={spurious_correlation}; valid: 0..1.")


def split_pool(ds: ImageDataset, n: int):
  """(the rest, a class-balanced pool of n) of `ds`, the pool drawn with `POOL_SEED`."""
  if n <= 0:
    return ds, None
  pool = np.sort(stratified_take(ds.labels, n, np.random.default_rng(POOL_SEED)))
  return ds.subset(np.setdiff1d(np.arange(len(ds)), pool)), ds.subset(pool)


def make_shift(name: str, dataset: str = "digits", *, data_dir: str = "", source: str = "auto",
               corruption: str = "gaussian_noise", seed: int = 0, omniglot_alphabets: int = 10,
               usps_resize: str = "box20", spurious_correlation: float = 0.95,
               target_pool: int = 0) -> ShiftTask:
  """The source and target tasks of shift `name` on `dataset` (module docstring).

  Args:
    name: one of `SHIFTS`.
    dataset: one of `DATASETS` ("mnist" only for `natural`).
    data_dir, source: where the data is read (`load_dataset`); USPS always from its mirror.
    corruption: the `input` shift's corruption, a name of `corruption_names()`.
    seed: corruption noise, label permutation and patch positions; equal seeds give equal
      arrays.
    omniglot_alphabets: Omniglot's classes are its first this many alphabets.
    usps_resize: how `natural` brings USPS to 28x28 (`usps_to_28`).
    spurious_correlation: how often the source's patch sits at its label's position.
    target_pool: training images held out of the source for the targets (module doc).
  """
  _check(name, dataset, corruption, usps_resize, spurious_correlation)
  train, test = _load(dataset, data_dir, source)
  train, pool = split_pool(train, target_pool)
  if dataset == "omniglot":  # classes = alphabets; only the first `omniglot_alphabets`
    keep = lambda ds: ds.subset(ds.metadata["alphabet"] < omniglot_alphabets)
    train, test = keep(train), keep(test)
    num_classes = omniglot_alphabets
    clean = lambda ds: _relabel(ds, ds.metadata["alphabet"])
  else:
    num_classes = train.num_classes
    clean = lambda ds: ds

  if name in ("feature", "lpft"):
    if dataset == "omniglot" and name == "feature":  # characters of an alphabet alternate between source and target
      sub = lambda ds, src: clean(ds.subset((ds.labels % 2 == 0) == src))
      return ShiftTask(name, sub(train, True), sub(test, True), sub(train, False),
                       sub(test, False), num_classes, f"{dataset}:feature")
    if dataset == "fashion_mnist":
      src_classes = [s for _, s, _ in FASHION_SUPERCLASSES]
      tgt_classes = [t for _, _, t in FASHION_SUPERCLASSES]
    else:
      src_classes = list(range(num_classes // 2))
      tgt_classes = list(range(num_classes // 2, 2 * (num_classes // 2)))
    key = f"{dataset}:feature" + (f":pool{target_pool}" if target_pool else "")
    if name == "lpft":  # the feature source; the target: every class of the clean data
      return ShiftTask(name, train.select_classes(src_classes), test.select_classes(src_classes),
                       clean(pool if pool is not None else train), clean(test), num_classes, key)
    return ShiftTask(name, train.select_classes(src_classes), test.select_classes(src_classes),
                     train.select_classes(tgt_classes), test.select_classes(tgt_classes),
                     len(src_classes), key)

  source_train, source_test = clean(train), clean(test)
  target_base = clean(pool) if pool is not None else source_train  # images for the target
  pooled = f":pool{target_pool}" if target_pool else ""
  if name == "spurious":
    side, corners = patch_positions(*train.images.shape[1:3], num_classes)
    def patched(ds, part, correlation):
      rng = np.random.default_rng([seed, part])
      return _with_patches(ds, _nuisance(ds.labels, num_classes, correlation, rng), side,
                           corners)
    corr = spurious_correlation
    return ShiftTask(name, patched(source_train, 0, corr), patched(source_test, 1, corr),
                     patched(target_base, 2, None), patched(source_test, 3, None),
                     num_classes, f"{dataset}:spurious:{corr:g}:seed{seed}{pooled}")
  if name == "natural":
    def usps(split):
      ds = load_dataset("usps", split, data_dir=data_dir, source="mirror")
      return dataclasses.replace(ds, images=usps_to_28(ds.images, usps_resize))
    return ShiftTask(name, source_train, source_test, usps("train"), usps("test"),
                     num_classes, f"{dataset}:clean{pooled}")
  if name == "input":
    target = lambda ds, k: dataclasses.replace(ds, images=corrupt(ds.images, corruption,
                                                                   seed + k))
  else:
    perm = _derangement(num_classes, seed)
    target = lambda ds, k: _relabel(ds, perm[ds.labels])
  return ShiftTask(name, source_train, source_test, target(target_base, 1),
                   target(source_test, 2), num_classes, f"{dataset}:clean{pooled}")
