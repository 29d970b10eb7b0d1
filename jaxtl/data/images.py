"""Image files to a model's input: any format Pillow reads, any size, grey or colour.

jaxtl's datasets hold float32 images in [0, 1] with the ink (strokes, the lit object) near
1 on a background near 0, the convention of MNIST. Files come in every convention, so
`to_model_input` converts one image:
  1. to grey ("L", ITU-R 601 luma) for 1 channel, or to RGB for 3;
  2. to the size (height, width) with Lanczos resampling (as the Omniglot mirror's
     105 -> 28 reduction), aspect ratio not kept;
  3. to [0, 1], then the polarity:
     * `auto`: the mean of the one-pixel border decides: above 0.5 the background is light
       (ink dark on white, as Omniglot's and most scanned or drawn images), so the image
       is inverted; otherwise it is kept (MNIST-style light ink on dark);
     * `dark_ink`: always inverted; `light_ink`: never.

`read_folder(root)` reads a folder with one sub-folder per class (sorted names are classes
0, 1, ...): an `ImageDataset` whose `class_names` are the folder names (`read_labelled`:
the same as arrays, with each image's path). `read_images(folder)`
reads a folder of unlabelled images (sorted file names). Files and folders whose names
start with "." are skipped; any other file that Pillow cannot read is an error that names it.
"""
import os
from typing import Optional, Sequence, Tuple

import numpy as np

from jaxtl.data.image_dataset import ImageDataset
from jaxtl.errors import ConfigError, MissingInputError

POLARITIES = ("auto", "dark_ink", "light_ink")


def to_model_input(image, size: Optional[Tuple[int, int]], channels: int = 1,
                   polarity: str = "auto") -> np.ndarray:
  """One PIL image (or uint8 array) -> float32 (height, width, channels) in [0, 1];
  `size` None keeps the image's own, (height, width) resizes to it, an int S resizes the
  short side to S and crops the centre S x S (as torchvision's Resize + CenterCrop)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if polarity not in POLARITIES:
    raise ConfigError(f"Unknown polarity {polarity!r}; valid: {POLARITIES}.")
  if channels not in (1, 3):
    raise ConfigError(f"channels={channels}; valid: 1 (grey) or 3 (RGB).")
  if not isinstance(image, Image.Image):
    image = Image.fromarray(np.asarray(image, np.uint8).squeeze())
  image = image.convert("L" if channels == 1 else "RGB")
  if isinstance(size, (int, np.integer)) and size > 0:
    w, h = image.size
    w, h = max(size, round(w * size / min(w, h))), max(size, round(h * size / min(w, h)))
    left, top = (w - size) // 2, (h - size) // 2
    image = image.resize((w, h), Image.Resampling.BILINEAR).crop(
        (left, top, left + size, top + size))
    size = (size, size)
  height, width = size if size is not None else (image.size[1], image.size[0])
  if image.size != (width, height):
    image = image.resize((width, height), Image.Resampling.LANCZOS)
  x = np.asarray(image, np.float32).reshape(height, width, channels) / 255.0
  if polarity == "dark_ink" or (polarity == "auto" and _border_mean(x) > 0.5):
    x = 1.0 - x
  return x


def _border_mean(x: np.ndarray) -> float:
  border = np.concatenate([x[0].ravel(), x[-1].ravel(), x[:, 0].ravel(), x[:, -1].ravel()])
  return float(border.mean())


def _visible(folder: str) -> list:
  return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def read_image(path: str, size, channels: int = 1, polarity: str = "auto") -> np.ndarray:
  from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
  try:
    with Image.open(path) as image:
      image.load()
      return to_model_input(image, size, channels, polarity)
  except (UnidentifiedImageError, OSError) as e:
    raise ConfigError(f"Cannot read image {path}: {type(e).__name__}: {e}. Every file in an "
                      "image folder must be an image Pillow can open.") from e


def read_images(folder: str, size: Optional[Sequence[int]] = None, channels: int = 1,
                polarity: str = "auto") -> Tuple[np.ndarray, list]:
  """(images (N, H, W, C), their paths) of every image file in `folder`; `size` defaults
  to the first image's (height, width)."""
  if not os.path.isdir(folder):
    raise MissingInputError(f"Image folder {folder} does not exist.")
  paths = [os.path.join(folder, n) for n in _visible(folder)
           if os.path.isfile(os.path.join(folder, n))]
  if not paths:
    raise ConfigError(f"Image folder {folder} holds no image file.")
  images = []
  for p in paths:
    images.append(read_image(p, size, channels, polarity))
    size = images[-1].shape[:2] if size is None else size
  return np.stack(images), paths


def read_folder(root: str, size: Optional[Sequence[int]] = None, channels: int = 1,
                polarity: str = "auto", name: str = ""):
  """An `ImageDataset` from `root/<class name>/<image files>`; `size` defaults to the first
  image's (height, width)."""
  images, labels, classes, _ = read_labelled(root, size, channels, polarity)
  return ImageDataset(images, labels, name or root, source=f"folder:{root}",
                      class_names=classes)


def read_labelled(root: str, size: Optional[Sequence[int]] = None, channels: int = 1,
                  polarity: str = "auto"):
  """(images, labels, class names, paths) of `root/<class name>/<image files>`."""
  if not os.path.isdir(root):
    raise MissingInputError(f"Image folder {root} does not exist.")
  classes = [n for n in _visible(root) if os.path.isdir(os.path.join(root, n))]
  if not classes:
    raise ConfigError(f"{root} has no class sub-folders; lay it out as "
                      f"{root}/<class name>/<image files>.")
  images, labels, paths = [], [], []
  for label, cls in enumerate(classes):
    folder = os.path.join(root, cls)
    files = [os.path.join(folder, n) for n in _visible(folder)
             if os.path.isfile(os.path.join(folder, n))]
    if not files:
      raise ConfigError(f"Class folder {folder} holds no image file; every class needs at "
                        "least one.")
    for path in files:
      images.append(read_image(path, size, channels, polarity))
      size = images[-1].shape[:2] if size is None else size  # the first image's, unless given
    labels += [label] * len(files)
    paths += files
  return np.stack(images), np.asarray(labels, np.int32), tuple(classes), paths
