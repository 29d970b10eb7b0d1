"""Shared test set-up: CPU only, the offline data mirrors of ../shared/data."""
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def require_shared_data() -> str:
  """The mirrors' folder. Without it a test skips on a user's machine, but fails in CI
  (CI=true), where a silently skipped test would pass a suite that tested nothing."""
  if not (SHARED_DATA / "omniglot" / "omniglot_28.npz").exists():
    message = f"offline data mirrors not found at {SHARED_DATA}"
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(message + " (CI=true: tests that need them must run)")
    pytest.skip(message)
  return str(SHARED_DATA)


@pytest.fixture(scope="session")
def data_dir() -> str:
  return require_shared_data()
