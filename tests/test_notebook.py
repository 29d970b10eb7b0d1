"""notebooks/quickstart.ipynb runs top to bottom in a fresh interpreter."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_notebook_executes():
  with open(os.path.join(ROOT, "notebooks", "quickstart.ipynb")) as f:
    notebook = json.load(f)
  cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
  assert not any(line.lstrip().startswith(("!", "%")) for c in cells for line in c.splitlines())
  # As Jupyter runs it: from notebooks/, with the library installed and experiments/ not.
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env.update(MPLBACKEND="Agg", JAXTL_COMPILATION_CACHE="")
  proc = subprocess.run([sys.executable, "-c", "\n\n".join(cells)],
                        cwd=os.path.join(ROOT, "notebooks"), env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "target test accuracy" in proc.stdout and "Meta-learning" in proc.stdout
