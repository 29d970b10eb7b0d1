import numpy as np
import pytest

from jaxtl import partition

PARAMS = {"block1": {"conv": {"kernel": np.ones((3, 3)), "bias": np.zeros(3)}},
          "block2": {"kernel": np.ones(2)}, "head": {"kernel": np.ones((2, 2))}}


def test_first_match_wins_and_every_leaf_labelled():
  labels = partition.label_params(PARAMS, [("^head/", 1.0), ("kernel", 0.5), (".*", None)])
  assert labels == {"block1": {"conv": {"kernel": 0.5, "bias": None}},
                    "block2": {"kernel": 0.5}, "head": {"kernel": 1.0}}


def test_unmatched_leaf_is_an_error_naming_it():
  with pytest.raises(ValueError, match="block1/conv/bias"):
    partition.label_params(PARAMS, [("kernel", 1.0)])


def test_pattern_matching_nothing_is_an_error():
  with pytest.raises(ValueError, match=r"\^block9/"):
    partition.label_params(PARAMS, [("^block9/", 1.0), (".*", None)])


def test_split_merge_round_trip_and_describe():
  labels = partition.label_params(PARAMS, [("^head/", 1.0), (".*", None)])
  trainable, frozen = partition.split(PARAMS, labels, lambda l: l is not None)
  assert partition.param_paths(trainable) == ["head/kernel"]
  assert len(partition.param_paths(frozen)) == 3
  merged = partition.merge(trainable, frozen)
  assert sorted(partition.param_paths(merged)) == sorted(partition.param_paths(PARAMS))
  text = partition.describe(PARAMS, labels)
  assert "block1/conv/kernel" in text and "(3, 3)" in text and "None" in text
  assert partition.count(PARAMS) == 9 + 3 + 2 + 4
