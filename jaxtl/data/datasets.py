"""One small in-memory dataset form and the sources it is read from.

`load_dataset(name, split)` returns an `ImageDataset`: float32 images NHWC in [0, 1]
with ink (the strokes, or the lit object of Fashion-MNIST) near 1 on a background near 0,
int32 labels and optional per-example metadata.

Sources, tried in this order when `source="auto"`:
  1. TensorFlow Datasets, if the dataset is already prepared in the TFDS data dir
     (no download is attempted at this point).
  2. An offline mirror in the jaxtl data directory (argument `data_dir`, else env
     `JAXTL_DATA_DIR`), laid out as `omniglot/omniglot_28.npz`, `mnist/mnist.npz`,
     `fashion_mnist/fashion_mnist.npz`, `usps/usps.npz`.
  3. TensorFlow Datasets with download (needs internet), unless `download=False`.
Besides jaxtl's names (`DATASETS`), `name` may be
  * a folder (a path with "/"): class sub-folders of image files, read by
    `jaxtl.data.images.read_folder` (any format Pillow reads; grey, ink light on dark,
    every image at the first one's size); the split is a sub-folder (train/, test/) or
    "all" for class folders right under the path;
  * any other TensorFlow Datasets name with `image` and `label` features (pixels / 255,
    channels kept, class names from TFDS), e.g. "cifar10" or "kmnist".
Embedded datasets (`digits`: scikit-learn's 8x8 handwritten digits) ship inside an
installed package and need no source. TFDS has no USPS, so `usps` is read from the
mirror only. A dataset found nowhere raises `DatasetNotFoundError` naming every place
that was looked at; there is never a fallback to other data.

USPS is loaded at its native 16x16 (the exact `x_*_milli` values, v = milli / 1000 in
[-1, 1], image = (v + 1) / 2). `usps_to_28` brings it to MNIST's 28x28 the way MNIST itself
was made (LeCun et al.: digits size-normalised into a 20x20 box, centred in 28x28): the
16x16 digit is scaled bilinearly to 20x20 and padded with 4 background pixels each side
(the mean pixel of USPS train is then 0.130, MNIST train's 0.131).
"""
import dataclasses
import functools
import gzip
import importlib.resources
import os
import shutil
from typing import Optional

import numpy as np

from jaxtl.data import images as images_lib
from jaxtl.data.image_dataset import ImageDataset
from jaxtl.errors import ConfigError, MissingInputError

SOURCES = ("auto", "tfds", "mirror", "embedded")
# name -> valid splits. Omniglot: Lake's background/evaluation alphabets, or all 1623 classes.
DATASETS = {
    "digits": ("train", "test", "all"),
    "mnist": ("train", "test"),
    "fashion_mnist": ("train", "test"),
    "usps": ("train", "test"),
    "omniglot": ("background", "evaluation", "all"),
}
EMBEDDED = ("digits",)
MIRROR_ONLY = ("usps",)  # not in TensorFlow Datasets
MIRROR_FILES = {"mnist": "mnist/mnist.npz", "fashion_mnist": "fashion_mnist/fashion_mnist.npz",
                "usps": "usps/usps.npz", "omniglot": "omniglot/omniglot_28.npz"}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
# How `usps_to_28` brings 16x16 to 28x28: MNIST's 20x20 box plus a 4-pixel margin, or the
# whole frame (no margin; strokes end up thicker and longer than MNIST's).
USPS_RESIZES = ("box20", "stretch")
OMNIGLOT_BACKGROUND_CLASSES = 964  # classes 0..963 are images_background


class DatasetNotFoundError(MissingInputError):
  """No source holds the requested dataset."""


def stratified_take(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
  """Indices of `n` examples with classes as balanced as possible, in random order."""
  classes = np.unique(labels)
  per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
  order = []  # round-robin over classes
  for i in range(max(len(p) for p in per_class)):
    order.extend(p[i] for p in per_class if i < len(p))
  if n > len(order):
    raise ConfigError(f"Asked for {n} examples but only {len(order)} are available.")
  return rng.permutation(np.asarray(order[:n], np.int64))


def resolve_data_dir(data_dir: Optional[str] = None) -> Optional[str]:
  return data_dir or os.environ.get("JAXTL_DATA_DIR") or None


def load_dataset(name: str, split: str, *, data_dir: Optional[str] = None,
                 source: str = "auto", tfds_data_dir: Optional[str] = None,
                 download: bool = True, channels: int = 1, polarity: str = "auto",
                 size=None) -> ImageDataset:
  """Loads `split` of dataset `name` from the first source that has it (module doc).
  `channels`, `polarity` and `size` apply to a folder's images (`jaxtl.data.images`)."""
  if is_folder(name):
    return _load_folder(name, split, channels, polarity, size)
  if name not in DATASETS:
    return _load_any_tfds(name, split, source, tfds_data_dir, download)
  if split not in DATASETS[name]:
    raise ConfigError(f"Unknown split {split!r} of {name}; valid splits: {DATASETS[name]}.")
  if source not in SOURCES:
    raise ConfigError(f"Unknown source {source!r}; valid sources: {SOURCES}.")
  if name in EMBEDDED:
    if source not in ("auto", "embedded"):
      raise ConfigError(f"{name} is embedded; use source='embedded' or 'auto', not {source!r}.")
    return dataclasses.replace(_load_digits(split), source=f"embedded:{name}")
  if source == "embedded":
    raise ConfigError(f"{name} is not embedded; embedded datasets: {EMBEDDED}.")
  if name in MIRROR_ONLY and source == "tfds":
    raise ConfigError(f"TensorFlow Datasets has no {name}; its mirror {MIRROR_FILES[name]} is "
                      f"the only source: use source='mirror' or 'auto'.")

  tried = []
  attempts = {"auto": [("tfds", False), ("mirror", None), ("tfds", True)],
              "tfds": [("tfds", True)], "mirror": [("mirror", None)]}[source]
  if name in MIRROR_ONLY:
    attempts = [("mirror", None)]
  for kind, allow_download in attempts:
    if kind == "mirror":
      root = resolve_data_dir(data_dir)
      if root is None:
        tried.append("mirror: no data directory set (data_dir argument or $JAXTL_DATA_DIR)")
        continue
      path = os.path.join(root, MIRROR_FILES[name])
      if os.path.exists(path):
        return dataclasses.replace(_load_mirror(name, split, path),
                                   source=f"mirror:{MIRROR_FILES[name]}")
      tried.append(f"mirror: {path} does not exist")
    else:
      if allow_download and not download:
        continue
      result, why = _load_tfds(name, split, tfds_data_dir, allow_download)
      if result is not None:
        return dataclasses.replace(result, source=f"tfds:{name}")
      tried.append(f"tfds ({'download' if allow_download else 'prepared only'}): {why}")
  if name in MIRROR_ONLY:
    how = (f"TensorFlow Datasets has no {name}; the mirror is the only source: point "
           f"data_dir / $JAXTL_DATA_DIR at a folder holding {MIRROR_FILES[name]}.")
  else:
    how = (f"Get it with TensorFlow Datasets (internet needed), or point data_dir / "
           f"$JAXTL_DATA_DIR at a folder holding {MIRROR_FILES[name]}.")
  raise DatasetNotFoundError(f"Dataset {name!r} split {split!r} not found. Looked at:\n  - " +
                             "\n  - ".join(tried) + "\n" + how)


def is_folder(name: str) -> bool:
  """A dataset name with a path separator (or ~) is a folder of class sub-folders."""
  return "/" in name or os.sep in name or name.startswith("~")


def _load_folder(name: str, split: str, channels: int, polarity: str, size) -> ImageDataset:
  root = os.path.expanduser(name)
  if not os.path.isdir(root):
    raise DatasetNotFoundError(f"Image folder {root} does not exist.")
  read = lambda folder: images_lib.read_folder(folder, size, channels, polarity, name=name)
  if os.path.isdir(os.path.join(root, split)):
    return read(os.path.join(root, split))
  if split == "all":
    return read(root)
  raise ConfigError(f"Split {split!r} of folder {root}: there is no sub-folder {split!r}. "
                    f"Valid splits: 'all' (the class folders right under {root}) or a "
                    "sub-folder that holds class folders (e.g. train/, test/).")


def _load_any_tfds(name, split, source, tfds_data_dir, download) -> ImageDataset:
  """Any TensorFlow Datasets image classification set (features `image` and `label`)."""
  if source not in ("auto", "tfds"):
    raise ConfigError(f"{name!r} is not one of jaxtl's datasets {sorted(DATASETS)} nor a "
                      f"folder (a path with '/'); only TensorFlow Datasets can hold it, so "
                      f"source must be 'auto' or 'tfds', not {source!r}.")
  result, why = _load_tfds(name, split, tfds_data_dir, download)
  if result is None:
    raise DatasetNotFoundError(
        f"Dataset {name!r} split {split!r} not found: it is not one of jaxtl's datasets "
        f"{sorted(DATASETS)} nor a folder (a path with '/'), and TensorFlow Datasets says: "
        f"{why}")
  return dataclasses.replace(result, source=f"tfds:{name}")


def usps_to_28(images: np.ndarray, resize: str = "box20") -> np.ndarray:
  """USPS images (N, 16, 16, 1) in [0, 1] as (N, 28, 28, 1) for 28x28 MNIST models.

  "box20" (default) scales the digit bilinearly (PIL's bilinear weights) to 20x20 and pads
  4 background pixels each side, as MNIST's digits were size-normalised into a 20x20 box
  in a 28x28 frame (MNIST centres by centre of mass; USPS digits fill their frame, so the
  box centre is close). "stretch" scales to 28x28 with no margin. Bilinear weights are
  non-negative and sum to 1, so values stay in [0, 1] (no ringing, unlike Lanczos).
  """
  if resize not in USPS_RESIZES:
    raise ConfigError(f"Unknown USPS resize {resize!r}; valid: {USPS_RESIZES}.")
  if images.ndim != 4 or images.shape[1:] != (16, 16, 1):
    raise ConfigError(f"usps_to_28 takes (N, 16, 16, 1) images, got shape {images.shape}.")
  size = 20 if resize == "box20" else 28
  weights = _bilinear_weights(16, size)
  # Resizing is separable and linear: rows, then columns, as PIL does (to ~1e-7).
  scaled = np.einsum("ij,njk,lk->nil", weights, images[..., 0], weights, optimize=True)
  margin = (28 - size) // 2
  out = np.pad(scaled, ((0, 0), (margin, margin), (margin, margin)))
  return np.clip(out, 0.0, 1.0).astype(np.float32)[..., None]


def _bilinear_weights(size_in: int, size_out: int) -> np.ndarray:
  """(size_out, size_in) matrix of PIL's bilinear resize: resizing the identity's height
  (its width unchanged, so PIL skips that pass) gives it. One matrix product for all
  images instead of one PIL call per image."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  eye = Image.fromarray(np.eye(size_in, dtype=np.float32))
  return np.asarray(eye.resize((size_in, size_out), Image.Resampling.BILINEAR), np.float32)

@functools.lru_cache(maxsize=1)
def _digits_table() -> np.ndarray:
  path = importlib.resources.files("sklearn.datasets") / "data" / "digits.csv.gz"
  with gzip.open(str(path), "rt") as f:
    table = np.loadtxt(f, delimiter=",", dtype=np.float32)
  table.setflags(write=False)
  return table


def _load_digits(split: str) -> ImageDataset:
  """scikit-learn's copy of the UCI 8x8 digits (1797 images, pixel values 0..16)."""
  table = _digits_table()
  images = (table[:, :-1] / 16.0).reshape(-1, 8, 8, 1)
  labels = table[:, -1].astype(np.int32)
  # A fixed, seeded 75/25 train/test split: the data ships without one.
  order = np.random.default_rng(0).permutation(len(labels))
  cut = int(0.75 * len(labels))
  index = {"train": order[:cut], "test": order[cut:], "all": np.arange(len(labels))}[split]
  index = np.sort(index)
  return ImageDataset(images[index], labels[index], "digits")


def _load_mirror(name: str, split: str, path: str) -> ImageDataset:
  with np.load(path) as z:
    if name in ("mnist", "fashion_mnist"):  # uint8, 0 = background
      images = z[f"x_{split}"].astype(np.float32)[..., None] / 255.0
      names = FASHION_MNIST_CLASSES if name == "fashion_mnist" else tuple("0123456789")
      return ImageDataset(images, z[f"y_{split}"].astype(np.int32), name, class_names=names)
    if name == "usps":
      # The exact file values (thousandths of v in [-1, 1]); (v + 1) / 2 in one rounding.
      milli = z[f"x_{split}_milli"].astype(np.float32)[..., None]
      return ImageDataset((milli + 1000.0) / 2000.0, z[f"y_{split}"].astype(np.int32), "usps")
    keep = {"background": z["split"] == 0, "evaluation": z["split"] == 1,
            "all": np.ones(len(z["labels"]), bool)}[split]
    # Stored as 255 = white paper; flip so that ink is 1.
    images = 1.0 - z["images"][keep].astype(np.float32)[..., None] / 255.0
    meta = {"alphabet": z["alphabet"][keep].astype(np.int32),
            "drawer": z["drawer"][keep].astype(np.int32)}
    return ImageDataset(images, z["labels"][keep].astype(np.int32), "omniglot", meta,
                        class_names=tuple(str(n) for n in z["character_names"]))


def _load_tfds(name: str, split: str, tfds_data_dir, download: bool):
  """Returns (dataset, None) or (None, why-not). Reads through `tfds.data_source`."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    return None, f"tensorflow_datasets not importable ({e})"
  tfds_splits = {"background": ["train"], "evaluation": ["test"]}
  if name == "omniglot":
    tfds_splits["all"] = ["train", "test"]
  if download:  # TFDS retries a failed download 10 times with backoff (about 200 s offline)
    from tensorflow_datasets.core.download import downloader  # pylint: disable=g-import-not-at-top
    downloader.MAX_RETRIES = min(downloader.MAX_RETRIES, 3)
  parts, names = [], ()
  root = tfds_data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser(
      "~/tensorflow_datasets")
  base = name.split("/")[0].split(":")[0]
  made = [p for p in (os.path.join(root, base), os.path.join(root, "downloads", base),
                      os.path.join(root, "downloads"), root)
          if not os.path.exists(p)]  # what a failed attempt must not leave behind
  try:
    for tfds_split in tfds_splits.get(split, [split]):
      source = tfds.data_source(name, split=tfds_split, data_dir=tfds_data_dir,
                                download=download)
      features = source.dataset_info.features
      names = tuple(getattr(features["label"], "names", ())) if "label" in features else ()
      parts.append((tfds_split, [source[i] for i in range(len(source))]))
  except Exception as e:  # TFDS raises many types for "not there"; report them all.
    for path in made:
      shutil.rmtree(path, ignore_errors=True)
    missing = _missing_module(e)
    if missing:  # preparing a dataset needs more than reading one
      return None, (f"TFDS needs the module {missing!r} to download and prepare {name!r}, "
                    f"and it is not installed: pip install {_PIP_NAMES.get(missing, missing)}")
    if download and _is_network_error(e):
      return None, (f"{name!r} needs a download, which failed ({type(e).__name__}): no "
                    "network here? Prepare it on a machine with internet and pass its TFDS "
                    "folder (tfds_data_dir / $TFDS_DATA_DIR)")
    return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
  return _from_tfds_examples(name, parts, names), None


_PIP_NAMES = {"tensorflow": "tensorflow-cpu", "importlib_resources": "importlib_resources"}


def _is_network_error(e: BaseException) -> bool:
  """Whether a connection failure is in `e`'s chain (requests, urllib3 or the OS's)."""
  seen = []
  while e is not None and e not in seen:
    seen.append(e)
    names = {c.__name__ for c in type(e).__mro__}
    if names & {"ConnectionError", "MaxRetryError", "NewConnectionError", "Timeout",
                "URLError", "gaierror", "DownloadError"}:
      return True
    e = e.__cause__ or e.__context__
  return False


def _missing_module(e: BaseException):
  """The name of a module whose absence caused `e` (TFDS imports some lazily), or None."""
  seen = []
  while e is not None and e not in seen:
    seen.append(e)
    if isinstance(e, ModuleNotFoundError) and e.name:
      return e.name.split(".")[0]
    text = str(e)
    if "No module named" in text:
      return text.split("No module named", 1)[1].strip().strip("'\"").split("'")[0].split(".")[0]
    e = e.__cause__ or e.__context__
  return None


def _from_tfds_examples(name, parts, class_names=()) -> ImageDataset:
  first = parts[0][1][0] if parts and parts[0][1] else {}
  if first and not {"image", "label"} <= set(first):
    raise ConfigError(f"TFDS dataset {name!r} has features {sorted(first)}; jaxtl reads "
                      "image classification sets, with features 'image' and 'label'.")
  images, labels, meta = [], [], {"alphabet": []}
  for tfds_split, examples in parts:
    for ex in examples:
      image = np.asarray(ex["image"])
      label = int(ex["label"])
      if name == "omniglot":
        # TFDS stores 105x105 RGB, paper white; resize like the mirror (Lanczos) to 28x28.
        image = _resize_28(image[..., 0])
        image = 1.0 - image[..., None] / 255.0
        label += OMNIGLOT_BACKGROUND_CLASSES if tfds_split == "test" else 0
        meta["alphabet"].append(int(ex["alphabet"]))
      else:
        image = image.astype(np.float32) / 255.0
      images.append(image.astype(np.float32))
      labels.append(label)
  metadata = {k: np.asarray(v, np.int32) for k, v in meta.items() if v}
  shapes = sorted({im.shape for im in images})
  if len(shapes) > 1:
    raise ConfigError(f"TFDS dataset {name!r} has images of several sizes ({shapes[:3]}...); "
                      "jaxtl holds a split in memory as one array, so one size is needed.")
  return ImageDataset(np.stack(images), np.asarray(labels, np.int32), name, metadata,
                      class_names=tuple(class_names) if name != "omniglot" else ())


def _resize_28(image: np.ndarray) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top  (Pillow comes with matplotlib/TFDS)
  out = Image.fromarray(image.astype(np.uint8)).resize((28, 28), Image.Resampling.LANCZOS)
  return np.asarray(out, np.float32)

