import numpy as np
import pytest

from jaxtl.data import DatasetNotFoundError, ImageDataset, load_dataset


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


def test_env_var_sets_data_dir(data_dir, monkeypatch):
  monkeypatch.setenv("JAXTL_DATA_DIR", data_dir)
  assert len(load_dataset("mnist", "test", source="mirror")) == 10000


def test_missing_dataset_names_what_was_looked_for(tmp_path):
  with pytest.raises(DatasetNotFoundError) as e:
    load_dataset("mnist", "train", data_dir=str(tmp_path), tfds_data_dir=str(tmp_path),
                 download=False)
  assert str(tmp_path / "mnist" / "mnist.npz") in str(e.value) and "tfds" in str(e.value)


@pytest.mark.parametrize("args,match", [(("cifar", "train"), "valid datasets"),
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
  assert mnist.images.shape == (4, 28, 28, 1) and mnist.images.max() <= 1.0
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
