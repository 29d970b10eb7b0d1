"""The committed results: every results table of README.md and BUILD_NOTES.md is the
report's, committed results name no machine's paths, and a committed checkpoint
re-evaluates to its committed number."""
import json
import os
import re
import subprocess

import pytest
from absl import flags
from ml_collections import config_flags

from experiments.configs import meta as meta_configs
from jaxtl import report, workdir as run_dir
from jaxtl.meta import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "results")
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")


def test_readme_omniglot_table_is_the_reports():
  """No number in the README's table is typed by hand: after new results, paste the
  table from `python -m experiments.report --workdir=results --out=results`."""
  grid = report.omniglot_grid(report.find_runs(RESULTS))
  assert _readme_block("omniglot-table").strip() == grid.strip()


def _committed_json_files() -> list[str]:
  """JSON files under results/ that git tracks (all of them when git is not there)."""
  try:
    out = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
  except (OSError, subprocess.CalledProcessError):
    out = [os.path.relpath(os.path.join(folder, f), ROOT)
           for folder, _, files in os.walk(RESULTS) for f in files]
  return sorted(f for f in out if f.endswith(".json"))


def _absolute_paths(value, key=""):
  """(key, value) of every string in a JSON value that starts with "/"."""
  if isinstance(value, dict):
    for k, v in value.items():
      yield from _absolute_paths(v, f"{key}.{k}" if key else k)
  elif isinstance(value, list):
    for i, v in enumerate(value):
      yield from _absolute_paths(v, f"{key}[{i}]")
  elif isinstance(value, str) and value.startswith("/"):
    yield key, value


def test_committed_results_name_no_absolute_paths():
  """A path of the machine that wrote a result means nothing in a clone (and says who
  ran it): committed JSON stores paths relative to the repository root."""
  files = _committed_json_files()
  assert files
  found = []
  for name in files:
    with open(os.path.join(ROOT, name)) as f:
      found += [f"{name}: {key} = {value!r}" for key, value in _absolute_paths(json.load(f))]
  assert not found, "absolute paths in committed results:\n" + "\n".join(found)


def _readme_block(name: str) -> str:
  with open(os.path.join(ROOT, "README.md")) as f:
    block = re.search(rf"<!-- {name} -->\n(.*?)\n<!-- /{name} -->", f.read(), re.S)
  assert block, f"README.md lost its <!-- {name} --> block"
  return block.group(1)


def _config_from_flags(variant: str, overrides: list[str]):
  argv = ["meta_train", f"--config={ROOT}/experiments/configs/meta.py:{variant}", *overrides]
  values = flags.FlagValues()  # parsed as the launchers parse them
  config_flags.DEFINE_config_file("config", None, flag_values=values, sys_argv=argv)
  values(argv)
  return values.config


def test_readme_commands_reproduce_each_omniglot_run():
  """Each row of the README's runs table: variant + flags give the config the committed
  run was trained with (fields of how it executed aside), and a model `meta_eval`
  accepts; every Omniglot run under results/ has a row."""
  rows = [re.findall(r"`([^`]*)`", line) for line in _readme_block("omniglot-runs").splitlines()
          if line.startswith("| `results/")]
  listed = set()
  for cells in rows:
    folder, variant, overrides = cells[0].rstrip("/"), cells[1], " ".join(cells[2:3])
    listed.add(folder)
    saved = run_dir.saved_config(os.path.join(ROOT, folder))
    config = _config_from_flags(variant, overrides.split())
    current = json.loads(config.to_json_best_effort())
    for key, value in saved.items():
      if key in run_dir.EXECUTION_FIELDS:
        continue
      if isinstance(value, dict):  # runs older than a model option lack its key
        assert {k: current[key][k] for k in value} == value, (folder, key)
      else:
        assert current[key] == value, (folder, key, current[key], value)
    train.check_same_model(config, os.path.join(ROOT, folder))  # meta_eval accepts it
  runs = {os.path.join("results", name.split("/")[0]) for name, r in report.find_runs(RESULTS)
          if r["config"].get("dataset") == "omniglot"}
  assert runs <= listed, runs - listed


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
