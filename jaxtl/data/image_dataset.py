"""`ImageDataset`: images (N, H, W, C) in [0, 1], integer labels, per-example metadata and
where they came from; every loader of `jaxtl.data` returns one."""
import dataclasses
import hashlib
from typing import Mapping, Sequence, Tuple

import numpy as np

from jaxtl.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ImageDataset:
  """Images (N, H, W, C) float32, labels (N,) int32, metadata name -> (N,) array;
  `source` says where it was read ("mirror:omniglot/omniglot_28.npz", "tfds:omniglot",
  "embedded:digits"; "" for arrays a user made)."""
  images: np.ndarray
  labels: np.ndarray
  name: str
  metadata: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
  source: str = ""
  class_names: Tuple[str, ...] = ()  # label k's name, where the source has names

  def __post_init__(self):
    if len(self.images) != len(self.labels):
      raise ConfigError(f"{len(self.images)} images but {len(self.labels)} labels.")

  def __len__(self):
    return len(self.labels)

  @property
  def num_classes(self) -> int:
    return int(self.labels.max()) + 1 if len(self) else 0

  @property
  def classes(self) -> np.ndarray:
    return np.unique(self.labels)

  def subset(self, index) -> "ImageDataset":
    return dataclasses.replace(self, images=self.images[index], labels=self.labels[index],
                               metadata={k: v[index] for k, v in self.metadata.items()})

  def provenance(self) -> dict:
    """Where the data came from and a hash of its labels and metadata in order: two runs
    with the same hash numbered the same classes the same way (TFDS and the mirror may
    not), so a seeded class split picked the same classes."""
    digest = hashlib.sha256(np.ascontiguousarray(self.labels, np.int64).tobytes())
    for key in sorted(self.metadata):
      digest.update(key.encode() + np.ascontiguousarray(self.metadata[key], np.int64).tobytes())
    return {"dataset": self.name, "source": self.source, "examples": len(self),
            "labels_sha256": digest.hexdigest()[:16]}

  def select_classes(self, classes: Sequence[int], relabel: bool = True) -> "ImageDataset":
    """Keeps the examples of `classes`; relabels them 0..len(classes)-1 in the given order."""
    classes = np.asarray(classes)
    missing = np.setdiff1d(classes, self.classes)
    if missing.size:
      raise ConfigError(f"{self.name}: classes {missing.tolist()} not present; "
                        f"valid classes are {self.classes.min()}..{self.classes.max()}.")
    keep = np.isin(self.labels, classes)
    out = self.subset(keep)
    if relabel:
      lookup = np.full(self.labels.max() + 1, -1, np.int32)
      lookup[classes] = np.arange(len(classes), dtype=np.int32)
      names = tuple(self.class_names[c] for c in classes) if self.class_names else ()
      out = dataclasses.replace(out, labels=lookup[out.labels], class_names=names)
    return out
