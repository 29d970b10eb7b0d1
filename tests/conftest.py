"""Shared test set-up: CPU only, the offline data mirrors of ../shared/data."""
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> str:
  if not (SHARED_DATA / "omniglot" / "omniglot_28.npz").exists():
    pytest.skip(f"offline data mirrors not found at {SHARED_DATA}")
  return str(SHARED_DATA)
