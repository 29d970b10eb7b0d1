"""A user's own images (`jaxtl.data.images`) and datasets by folder or TFDS name."""
import numpy as np
import pytest
from PIL import Image

from jaxtl.data import DatasetNotFoundError, load_dataset
from jaxtl.data import images as images_lib
from jaxtl.errors import ConfigError


def _write(folder, name, array, mode="L"):
  folder.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).convert(mode).save(folder / name)


def test_real_omniglot_pngs_read_as_the_mirror(data_dir, tmp_path):
  # Omniglot's PNGs are 1-bit, ink dark on white, 105x105; read at 28x28 they must equal
  # the mirror's 28x28 (the same Lanczos reduction), ink turned light by `auto`.
  with np.load(f"{data_dir}/omniglot/omniglot_105_bits.npz") as z:
    bits = np.unpackbits(z["bits"][:6], axis=1, count=105 * 105).reshape(-1, 105, 105)
  for i, b in enumerate(bits):
    _write(tmp_path / "omniglot" / f"class{i % 2}", f"{i}.png", (b * 255).astype(np.uint8),
           mode="1")
  ds = load_dataset(str(tmp_path / "omniglot"), "all")
  assert ds.images.shape == (6, 105, 105, 1)  # the first image's size
  ds28 = images_lib.read_folder(str(tmp_path / "omniglot"), size=(28, 28))
  mirror = load_dataset("omniglot", "all", data_dir=data_dir, source="mirror")
  order = [0, 2, 4, 1, 3, 5]  # class0 holds images 0, 2, 4
  np.testing.assert_array_equal(ds28.images, mirror.images[order])
  assert ds28.class_names == ("class0", "class1") and ds28.labels.tolist() == [0] * 3 + [1] * 3


def test_real_mnist_pngs_keep_their_light_ink(data_dir, tmp_path):
  mnist = load_dataset("mnist", "test", data_dir=data_dir, source="mirror")
  for i in range(4):
    _write(tmp_path / "test" / str(mnist.labels[i]), f"{i}.png",
           np.round(mnist.images[i, ..., 0] * 255).astype(np.uint8))
  ds = load_dataset(str(tmp_path), "test")  # the split is a sub-folder
  by_name = {int(c): k for k, c in enumerate(ds.class_names)}
  want = sorted(range(4), key=lambda i: (str(mnist.labels[i]), f"{i}.png"))
  np.testing.assert_array_equal(ds.images, mnist.images[want])
  assert [by_name[int(mnist.labels[i])] for i in want] == ds.labels.tolist()


@pytest.mark.parametrize("polarity,background,ink", [("auto", 255, 0), ("auto", 0, 255),
                                                     ("dark_ink", 255, 0), ("light_ink", 0, 255)])
def test_polarity_makes_ink_light(polarity, background, ink):
  x = np.full((10, 12), background, np.uint8)
  x[3:7, 4:8] = ink
  out = images_lib.to_model_input(x, (5, 6), polarity=polarity)
  assert out.shape == (5, 6, 1) and out.dtype == np.float32
  assert out[0, 0, 0] == 0.0 and out[2, 2:4, 0].min() > 0.5


def test_colour_to_grey_and_grey_to_rgb():
  rgb = np.zeros((4, 4, 3), np.uint8)
  rgb[..., 0] = 255  # red: luma 299/1000 of full
  grey = images_lib.to_model_input(rgb, None, polarity="light_ink")
  np.testing.assert_allclose(grey, 76 / 255)  # Pillow's L = R * 299/1000 (+ rounding)
  back = images_lib.to_model_input(np.full((4, 4), 200, np.uint8), (4, 4), channels=3,
                                   polarity="light_ink")
  assert back.shape == (4, 4, 3) and np.all(back == 200 / 255)


def test_bad_folders_say_what_is_wrong(tmp_path):
  with pytest.raises(ConfigError, match="no class sub-folders"):
    images_lib.read_folder(str(tmp_path))
  (tmp_path / "a").mkdir()
  (tmp_path / "a" / ".DS_Store").write_text("hidden files are skipped")
  with pytest.raises(ConfigError, match=r"Class folder .*a holds no image"):
    images_lib.read_folder(str(tmp_path))
  (tmp_path / "a" / "notes.png").write_text("not an image")
  with pytest.raises(ConfigError, match=r"Cannot read image .*notes.png"):
    images_lib.read_folder(str(tmp_path))
  (tmp_path / "query").mkdir()
  with pytest.raises(ConfigError, match="holds no image file"):
    images_lib.read_images(str(tmp_path / "query"))
  with pytest.raises(ConfigError, match="no sub-folder 'train'"):
    load_dataset(str(tmp_path), "train")
  with pytest.raises(DatasetNotFoundError, match="does not exist"):
    load_dataset(str(tmp_path / "missing"), "all")
  with pytest.raises(ConfigError, match="Unknown polarity 'dark'.*dark_ink"):
    images_lib.to_model_input(np.zeros((2, 2), np.uint8), None, polarity="dark")


def test_any_tfds_image_dataset_with_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=5):
    cifar = load_dataset("cifar10", "train")
  assert cifar.images.shape == (5, 32, 32, 3) and cifar.source == "tfds:cifar10"
  assert 0.0 <= cifar.images.min() and cifar.images.max() <= 1.0
  assert len(cifar.class_names) == 10


def test_unknown_names_say_where_they_were_looked_for():
  with pytest.raises(ConfigError, match="not one of jaxtl's datasets.*source must be"):
    load_dataset("cifar10", "train", source="mirror")
  with pytest.raises(DatasetNotFoundError, match="not one of jaxtl's datasets"):
    load_dataset("no_such_dataset_anywhere", "train", download=False)
