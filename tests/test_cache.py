"""Cells keyed by what produced them (`jaxtl.cache`): a changed config, code version or
input is refused in one line naming it, or recomputed when asked; never reused."""
import json

import numpy as np
import pytest

from experiments.configs import finetune as finetune_configs
from jaxtl import cache
from jaxtl.data.datasets import ImageDataset
from jaxtl.finetune import compare


def _key(**changes):
  key = {"config": {"lr": 1e-3, "steps": 100}, "code": cache.code_hash(),
         "inputs": {"pretrained": cache.tree_hash({"w": np.ones(3, np.float32)})}}
  key.update(changes)
  return key


def _counted():
  calls = []
  return calls, lambda: calls.append(1) or {"accuracy": 0.5 + len(calls)}


def test_a_cell_is_reused_only_under_an_equal_key_and_stamped(tmp_path):
  path = str(tmp_path / "cell.json")
  calls, compute = _counted()
  assert cache.cached(path, _key(), compute) == {"accuracy": 1.5}
  assert cache.cached(path, _key(), compute) == {"accuracy": 1.5} and len(calls) == 1
  with open(path) as f:
    stamp = json.load(f)["stamp"]
  assert stamp["code_hash"] == cache.code_hash() and "jax" in stamp["versions"]
  assert set(stamp) >= {"commit", "dirty"}


def test_a_changed_config_is_refused_or_recomputed(tmp_path):
  path = str(tmp_path / "cell.json")
  calls, compute = _counted()
  cache.cached(path, _key(), compute)
  other = _key(config={"lr": 1e-2, "steps": 100})
  with pytest.raises(cache.StaleCacheError, match=r"cell.json was computed with other config.lr;"):
    cache.cached(path, other, compute)
  assert cache.cached(path, other, compute, on_mismatch="recompute") == {"accuracy": 2.5}
  assert cache.cached(path, other, compute) == {"accuracy": 2.5} and len(calls) == 2


def test_a_changed_code_version_is_refused(tmp_path, monkeypatch):
  path = str(tmp_path / "cell.json")
  _, compute = _counted()
  cache.cached(path, _key(), compute)
  monkeypatch.setattr(cache, "code_hash", lambda: "another-version")
  with pytest.raises(cache.StaleCacheError, match="other code;"):
    cache.cached(path, _key(code=cache.code_hash()), compute)


def test_a_changed_input_is_refused(tmp_path):
  path = str(tmp_path / "cell.json")
  _, compute = _counted()
  cache.cached(path, _key(), compute)
  moved = {"w": np.array([1, 1, np.nextafter(np.float32(1), 2)], np.float32)}  # one ulp
  with pytest.raises(cache.StaleCacheError, match="other inputs.pretrained;"):
    cache.cached(path, _key(inputs={"pretrained": cache.tree_hash(moved)}), compute)


def _data(seed):
  """Toy (train, val, test); another seed draws other labels (what provenance hashes)."""
  rng = np.random.default_rng(seed)
  make = lambda n: ImageDataset(rng.random((n, 8, 8, 1), np.float32),
                                rng.permutation(np.arange(n) % 3).astype(np.int32), "toy",
                                source="made")
  return make(24), make(6), make(12)


def test_a_finished_pretraining_run_is_reused_only_with_its_code_and_data(tmp_path,
                                                                            monkeypatch):
  config = finetune_configs.get_config("quick")
  folder = str(tmp_path / "run")
  first = compare.run_cached(config, folder, _data(0))
  assert compare.run_cached(config, folder, _data(0)) == first
  with pytest.raises(cache.StaleCacheError, match="other data"):
    compare.run_cached(config, folder, _data(1))
  monkeypatch.setattr(cache, "code_hash", lambda: "another-version")
  with pytest.raises(cache.StaleCacheError, match="other code_hash"):
    compare.run_cached(config, folder, _data(0))
  again = compare.run_cached(config, folder, _data(0), on_mismatch="recompute")
  assert again["test_accuracy"] == first["test_accuracy"]  # same config, same machine
  assert (tmp_path / "run.stale-0" / "results.json").exists()  # the old run kept aside
