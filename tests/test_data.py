import numpy as np
import pytest

from jaxtl.data import DatasetNotFoundError, ImageDataset, load_dataset
from jaxtl.data.datasets import usps_to_28


def test_embedded_digits_need_no_download():
  train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
  assert train.images.shape[1:] == (8, 8, 1) and train.images.dtype == np.float32
  assert len(train) + len(test) == 1797 and train.num_classes == 10
  assert 0.0 <= train.images.min() and train.images.max() <= 1.0


def test_mirrors(data_dir):
  mnist = load_dataset("mnist", "test", data_dir=data_dir, source="mirror")
  assert mnist.images.shape == (10000, 28, 28, 1) and mnist.num_classes == 10
  omni = load_dataset("omniglot", "background", data_dir=data_dir, source="mirror")
  assert omni.images.shape == (19280, 28, 28, 1) and len(omni.classes) == 964
  assert omni.images.mean() < 0.5  # ink = 1 on a 0 background
  assert set(omni.metadata) == {"alphabet", "drawer"}


def test_fashion_mnist_mirror(data_dir):
  train = load_dataset("fashion_mnist", "train", data_dir=data_dir, source="mirror")
  test = load_dataset("fashion_mnist", "test", data_dir=data_dir, source="mirror")
  assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
  assert train.source == "mirror:fashion_mnist/fashion_mnist.npz"
  # README: 6000 / 1000 of each class; first labels; pixel mean 0.2860 on a black background.
  assert np.bincount(train.labels).tolist() == [6000] * 10
  assert np.bincount(test.labels).tolist() == [1000] * 10
  assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
  np.testing.assert_allclose(train.images.mean(), 0.2860405970, atol=1e-6)
  assert np.median(train.images[:, 0, 0]) == 0.0


def test_usps_mirror_reads_the_exact_values(data_dir):
  train = load_dataset("usps", "train", data_dir=data_dir, source="mirror")
  test = load_dataset("usps", "test", data_dir=data_dir)  # auto: the mirror, no TFDS
  assert train.images.shape == (7291, 16, 16, 1) and test.images.shape == (2007, 16, 16, 1)
  assert train.source == test.source == "mirror:usps/usps.npz"
  assert np.bincount(train.labels).tolist() == [1194, 1005, 731, 658, 652, 556, 664, 645, 542,
                                                644]
  assert np.bincount(test.labels).tolist() == [359, 264, 198, 166, 200, 160, 170, 147, 166, 177]
  assert train.labels[:10].tolist() == [6, 5, 4, 7, 3, 6, 3, 1, 0, 1]
  assert train.images.min() == 0.0 and train.images.max() == 1.0
  assert (train.images == 0).mean() > 0.5  # README: 59.6% of pixels are background (v = -1)
  # The uint8 copy is round((v + 1) / 2 * 255): within half a level of the exact values.
  with np.load(f"{data_dir}/usps/usps.npz") as z:
    np.testing.assert_allclose(train.images[..., 0] * 255, z["x_train"], atol=0.5 + 1e-4)


def test_usps_to_28_puts_the_digit_in_mnists_20x20_box(data_dir):
  usps = load_dataset("usps", "test", data_dir=data_dir)
  box = usps_to_28(usps.images)
  assert box.shape == (2007, 28, 28, 1) and box.dtype == np.float32
  assert 0.0 <= box.min() and box.max() <= 1.0
  margin = np.ones((28, 28), bool)
  margin[4:24, 4:24] = False
  assert np.all(box[:, margin] == 0)  # 4 background pixels each side
  np.testing.assert_allclose(box.mean(), usps.images.mean() * (20 / 28) ** 2, rtol=0.02)
  # The same as resizing each image with PIL (one matrix product instead of a call each).
  from PIL import Image  # pylint: disable=g-import-not-at-top
  one = Image.fromarray(usps.images[7, ..., 0]).resize((20, 20), Image.Resampling.BILINEAR)
  np.testing.assert_allclose(box[7, 4:24, 4:24, 0], np.asarray(one), atol=1e-6)
  stretch = usps_to_28(usps.images[:5], resize="stretch")
  assert stretch.shape == (5, 28, 28, 1) and stretch[:, 0].max() > 0
  with pytest.raises(ValueError, match="box20"):
    usps_to_28(usps.images[:5], resize="lanczos")
  with pytest.raises(ValueError, match="16, 16, 1"):
    usps_to_28(box[:5])


def test_usps_is_read_from_the_mirror_only(tmp_path):
  with pytest.raises(DatasetNotFoundError, match="mirror is the only source") as e:
    load_dataset("usps", "train", data_dir=str(tmp_path))
  assert str(tmp_path / "usps" / "usps.npz") in str(e.value)
  with pytest.raises(ValueError, match="has no usps"):
    load_dataset("usps", "train", source="tfds")


def test_env_var_sets_data_dir(data_dir, monkeypatch):
  monkeypatch.setenv("JAXTL_DATA_DIR", data_dir)
  assert len(load_dataset("mnist", "test", source="mirror")) == 10000


def test_missing_dataset_names_what_was_looked_for(tmp_path):
  with pytest.raises(DatasetNotFoundError) as e:
    load_dataset("mnist", "train", data_dir=str(tmp_path), tfds_data_dir=str(tmp_path),
                 download=False)
  assert str(tmp_path / "mnist" / "mnist.npz") in str(e.value) and "tfds" in str(e.value)


@pytest.mark.parametrize("args,match", [(("cifar", "train", "mirror"), "jaxtl's datasets"),
                                        (("mnist", "val"), "valid splits"),
                                        (("digits", "train", "tfds"), "embedded")])
def test_bad_names(args, match):
  with pytest.raises(ValueError, match=match):
    load_dataset(*args[:2], **({"source": args[2]} if len(args) > 2 else {}))


def test_tfds_source_with_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=4):
    mnist = load_dataset("mnist", "train", source="tfds")
    omni = load_dataset("omniglot", "all", source="tfds")
    fashion = load_dataset("fashion_mnist", "test", source="tfds")
  assert mnist.images.shape == (4, 28, 28, 1) and mnist.images.max() <= 1.0
  assert fashion.images.shape == (4, 28, 28, 1) and fashion.source == "tfds:fashion_mnist"
  assert omni.images.shape == (8, 28, 28, 1) and "alphabet" in omni.metadata
  assert omni.labels[4:].min() >= 964  # evaluation classes come after background ones


def test_omniglot_shift_without_drawers_says_what_is_missing(monkeypatch):
  from jaxtl.data import shifts  # pylint: disable=g-import-not-at-top
  from jaxtl.errors import ConfigError  # pylint: disable=g-import-not-at-top
  no_drawers = ImageDataset(np.zeros((4, 2, 2, 1), np.float32), np.arange(4, dtype=np.int32),
                            "omniglot", {"alphabet": np.zeros(4, np.int32)}, "tfds:omniglot")
  monkeypatch.setattr(shifts, "load_dataset", lambda *args, **kwargs: no_drawers)
  with pytest.raises(ConfigError, match=r"drawer, which tfds:omniglot does not record"):
    shifts.make_shift("feature", "omniglot")


def test_missing_mirrors_fail_under_ci_and_skip_elsewhere(monkeypatch, tmp_path):
  from tests import conftest  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path)
  monkeypatch.setenv("CI", "true")
  with pytest.raises(pytest.fail.Exception, match="CI=true"):
    conftest.require_shared_data()
  monkeypatch.setenv("CI", "")
  with pytest.raises(pytest.skip.Exception):
    conftest.require_shared_data()


def _tiny_tfds_builder(class_name: str, url: str):
  """A TFDS builder (registered as its snake_case name) of 8x8 images in 3 classes, its
  data downloaded from `url`: an .npz of `images` and `labels`."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(8, 8, 1)),
        "label": tfds.features.ClassLabel(num_classes=3)}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(dl_manager.download(url))}

  def _generate_examples(self, path):  # pylint: disable=unused-argument
    with open(path, "rb") as f:
      arrays = np.load(f)
      for i, (x, y) in enumerate(zip(arrays["images"], arrays["labels"])):
        yield i, {"image": x, "label": int(y)}

  return type(class_name, (tfds.core.GeneratorBasedBuilder,), {
      "VERSION": tfds.core.Version("1.0.0"), "_info": _info,
      "_split_generators": _split_generators, "_generate_examples": _generate_examples})


def test_a_tfds_name_goes_through_tfds_download_and_prepare_path(tmp_path):
  """A TFDS builder whose download is served on loopback: TFDS's real download-and-prepare
  path runs. Preparing needs TensorFlow (TFDS encodes images with it), which jaxtl does
  not install: then the error names the module and the pip command, and the failed
  attempt leaves nothing in the data folder. With TensorFlow, the images load."""
  import functools  # pylint: disable=import-outside-toplevel
  import http.server  # pylint: disable=import-outside-toplevel
  import importlib.util  # pylint: disable=import-outside-toplevel
  import threading  # pylint: disable=import-outside-toplevel
  from jaxtl.data.datasets import DatasetNotFoundError  # pylint: disable=import-outside-toplevel
  served = tmp_path / "served"
  served.mkdir()
  rng = np.random.default_rng(0)
  np.savez(served / "tiny.npz", images=(rng.random((12, 8, 8, 1)) * 255).astype(np.uint8),
           labels=np.arange(12) % 3)
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  _tiny_tfds_builder("JaxtlLoopbackTiny",
                     f"http://127.0.0.1:{server.server_address[1]}/tiny.npz")
  data = tmp_path / "tfds"
  try:
    if importlib.util.find_spec("tensorflow") is None:
      with pytest.raises(DatasetNotFoundError, match=r"TFDS needs the module 'tensorflow' to "
                         r"download and prepare 'jaxtl_loopback_tiny'.*pip install tensorflow-cpu"):
        load_dataset("jaxtl_loopback_tiny", "train", tfds_data_dir=str(data))
      assert not data.exists() or not any(data.rglob("*tiny*"))
    else:
      ds = load_dataset("jaxtl_loopback_tiny", "train", tfds_data_dir=str(data))
      assert ds.images.shape == (12, 8, 8, 1) and ds.source == "tfds:jaxtl_loopback_tiny"
  finally:
    server.shutdown()


def test_a_tfds_download_that_cannot_connect_fails_in_seconds_leaving_nothing(tmp_path):
  """No network (here: a closed loopback port): one message naming the dataset and the
  download, within seconds (TFDS alone retries for minutes), and no files left."""
  import time  # pylint: disable=import-outside-toplevel
  from jaxtl.data.datasets import DatasetNotFoundError  # pylint: disable=import-outside-toplevel
  _tiny_tfds_builder("JaxtlUnreachableTiny", "http://127.0.0.1:1/x")
  data = tmp_path / "tfds"
  start = time.perf_counter()
  with pytest.raises(DatasetNotFoundError, match=r"'jaxtl_unreachable_tiny' needs a download, "
                                                 r"which failed .*no network here\?"):
    load_dataset("jaxtl_unreachable_tiny", "train", tfds_data_dir=str(data))
  assert time.perf_counter() - start < 60
  assert not data.exists()
