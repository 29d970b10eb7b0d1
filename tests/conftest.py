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


def run_readme_example(marker: str, cwd) -> str:
  """Runs the python block after `<!-- marker -->` of README.md or a page of docs/ (exactly
  one of them has it) in a fresh interpreter in `cwd`; returns its standard output."""
  import re, subprocess, sys  # pylint: disable=import-outside-toplevel,multiple-imports
  pattern = rf"<!-- {marker} -->\n```python\n(.*?)```"
  found = [(path, block) for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
           for block in re.findall(pattern, path.read_text(), re.S)]
  where = [str(path.relative_to(REPO)) for path, _ in found]
  assert len(found) == 1, (f"{len(found)} python blocks after <!-- {marker} --> in README.md "
                           f"and docs/*.md, not one: {where}")
  block = found[0][1]
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  proc = subprocess.run([sys.executable, "-c", block], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout
