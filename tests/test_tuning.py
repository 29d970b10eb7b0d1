"""The one tuning rule (`jaxtl.finetune.tuning`) and the fine-tuning sweeps' rows on it."""
import math

import numpy as np
import pytest

from experiments.configs import compare as compare_config
from jaxtl import stats
from jaxtl.finetune import compare, tuning


def _peaked(at: float):
  """A validation accuracy with one peak, at `at`, falling off in log(lr)."""
  return lambda lr: 0.9 - 0.05 * abs(math.log10(lr) - math.log10(at))


def test_past_edge_steps_geometrically_and_stops_at_a_limit():
  assert tuning.past_edge((1e-3, 1e-2, 1e-1), 1e-1) == 1.0
  assert tuning.past_edge((1e-3, 1e-2, 1e-1), 1e-3) == 1e-4
  assert tuning.past_edge((1e-3, 1e-2, 1e-1), 1e-2) is None            # inside
  assert tuning.past_edge((0.5, 0.75, 0.9), 0.9, (0.05, 0.95)) == 0.95  # clipped
  assert tuning.past_edge((0.5, 0.75, 0.95), 0.95, (0.05, 0.95)) is None


def test_tune_widens_past_an_edge_pick_then_refines_around_it():
  tried = []
  evaluate = lambda lr: tried.append(lr) or _peaked(1e-5)(lr)
  pick, values, scores, edge = tuning.tune((1e-3, 1e-2, 1e-1), (1e-7, 10.0), evaluate, "lr")
  assert pick == pytest.approx(1e-5) and not edge
  assert [float(f"{v:.3g}") for v in values] == [1e-6, 3.16e-6, 1e-5, 3.16e-5, 1e-4, 1e-3,
                                                 1e-2, 1e-1]
  assert len(tried) == len(set(tried)) == len(scores)  # nothing evaluated twice


def test_tune_flags_a_pick_at_its_limit_as_on_the_edge():
  pick, _, _, edge = tuning.tune((1e-3, 1e-2, 1e-1), (1e-4, 10.0), _peaked(1e-6), "lr",
                                 floor=None)
  assert pick == 1e-4 and edge
  pick, _, _, edge = tuning.tune((1e-3, 1e-2, 1e-1), (1e-3, 1e-1), _peaked(10.0), "lr")
  assert pick == 1e-1 and edge  # the upper limit has no floor beyond it


def _flat_below(knee: float):
  """A validation accuracy that falls above `knee` and is flat below it, down to 0."""
  return lambda lr: 0.9 - 0.05 * max(0.0, math.log10(max(lr, 1e-30)) - math.log10(knee))


def test_tune_ends_a_plateau_reaching_the_lower_limit_at_zero_a_tuned_pick():
  """A plateau flat to the lower limit: the widening tries 0 (no update), which ties and
  so wins (ties go to the smaller value); nothing lies below 0, so the pick is not on
  an edge and is not refined."""
  tried = []
  evaluate = lambda lr: tried.append(lr) or _flat_below(1e-5)(lr)
  pick, values, scores, edge = tuning.tune((1e-3, 1e-2, 1e-1), (1e-7, 10.0), evaluate, "lr")
  assert pick == 0.0 and not edge
  assert values[:3] == [0.0, 1e-7, 1e-6] and tried.count(0.0) == 1 == len(tried) - len(
      set(tried)) + 1


def test_tune_keeps_the_lower_limit_when_it_beats_no_update():
  """Better at the limit than at 0 and than above: inside (0, 1e-6), refined around it."""
  evaluate = lambda lr: 0.5 if lr == 0 else _peaked(1e-9)(lr)
  pick, values, scores, edge = tuning.tune((1e-3, 1e-2, 1e-1), (1e-7, 10.0), evaluate, "lr")
  assert values[0] == 0.0 and not edge
  assert pick == pytest.approx(1e-7 / tuning.HALF_DECADE, rel=1e-2)
  assert scores[0.0] == 0.5 and max(scores, key=scores.get) == pick


def test_tune_breaks_ties_toward_the_smaller_value_after_refining():
  evaluate = lambda lr: 0.8 if 3e-4 <= lr <= 1e-2 else 0.7
  pick, _, _, edge = tuning.tune((1e-4, 1e-3, 1e-2, 1e-1), (1e-7, 10.0), evaluate, "lr")
  assert pick == 3.16e-4 and not edge  # the refinement's tie below 1e-3


def test_tuned_row_tunes_each_pre_training_and_takes_the_interval_over_them(tmp_path):
  """Pre-training p's runs peak at 10^-(3+p): each pick is its own, found past the
  grid's edge; the test accuracy is `stats.estimate` over the pre-trainings."""
  def train(config, workdir, data=None):
    p = config.seed // 100
    val = _peaked(10.0 ** -(3 + p))(config.learning_rate)
    return {"val_accuracy": val, "test_accuracy": val - 0.01 * p, "trainable_params": 7}

  config = compare_config.get_config("quick")
  config.lr_grid, config.lr_limits, config.seeds = (1e-2, 1e-1, 1.0), (1e-7, 10.0), (0,)
  row = compare.tuned_row(config, {}, {0: "", 1: "", 2: ""}, str(tmp_path), train_fn=train)
  assert [q["learning_rate"] for q in row["picks"]] == pytest.approx([1e-3, 1e-4, 1e-5])
  assert not row["on_edge"] and row["learning_rate"] == pytest.approx(1e-5)
  tests = [r["test_accuracy"] for r in row["per_seed"]]
  assert tests == pytest.approx([0.9, 0.89, 0.88])
  assert [r["seed"] for r in row["per_seed"]] == [0, 100, 200]
  e = stats.estimate(np.array(tests))
  assert (row["test_accuracy"], row["test_accuracy_ci95"]) == pytest.approx((e.mean, e.ci95))


def test_imported_weights_have_one_pre_training():
  config = compare_config.get_config("torchvision_quick")
  config.pretrain.init_from = "weights.pth"
  assert compare.pretrained_runs(config, "unused") == ({0: "weights.pth"}, {})
  config.pretrain_seeds = (0, 1)
  with pytest.raises(Exception, match=r"pretrain_seeds=\(0, 1\) with imported weights"):
    compare.pretrained_runs(config, "unused")


def test_a_rows_changes_are_the_most_any_pick_changed():
  """A row's changes column covers every pre-training's pick: one that picked learning
  rate 0 (LP-FT left as its probe: the head only) does not hide the others'."""
  probe_only = {"changed_params": 650, "changed_stats": 0, "changed_blocks": ["head"]}
  everything = {"changed_params": 77858, "changed_stats": 0,
                "changed_blocks": ["block1", "block2", "head"]}
  assert tuning.changes([probe_only, everything, probe_only]) == everything
  assert tuning.changes([probe_only]) == probe_only
