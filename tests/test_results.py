"""The committed results: the README's Omniglot table is the report's, and a committed
checkpoint re-evaluates to its committed number."""
import json
import os
import re

import pytest

from experiments.configs import meta as meta_configs
from jaxtl import report
from jaxtl.meta import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "results")
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")


def test_readme_omniglot_table_is_the_reports():
  """No number in the README's table is typed by hand: after new results, paste the
  table from `python -m experiments.report --workdir=results --out=results`."""
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  block = re.search(r"<!-- omniglot-table -->\n(.*?)\n<!-- /omniglot-table -->", readme, re.S)
  assert block, "README.md lost its <!-- omniglot-table --> block"
  assert block.group(1).strip() == report.omniglot_grid(report.find_runs(RESULTS)).strip()


@pytest.mark.skipif(not os.path.exists(os.path.join(DATA, "omniglot", "omniglot_28.npz")),
                    reason="needs the Omniglot mirror in ../shared/data")
def test_committed_protonet_checkpoint_reevaluates_to_its_number(tmp_path):
  run = os.path.join(RESULTS, "omniglot_5w1s_protonet")
  with open(os.path.join(run, "meta_eval", "results.json")) as f:
    committed = json.load(f)["metrics"]
  config = meta_configs.get_config("omniglot_5w1s")
  config.algorithm, config.model_kwargs.pool, config.data_dir = "protonet", "flatten", DATA
  metrics = train.evaluate_checkpoint(config, run, str(tmp_path))
  assert metrics["test_accuracy"] == pytest.approx(committed["test_accuracy"], abs=1e-6)
  assert metrics["meta_iterations"] == committed["meta_iterations"] == 5000
