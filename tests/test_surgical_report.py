"""The study's statistics and verdicts (`jaxtl.finetune.surgical_report`) on made-up seeds."""
import numpy as np
import pytest
from scipy import stats

from jaxtl.finetune import surgical, surgical_report

BLOCKS = ("block1", "block2", "block3", "block4", "head")


def _result(per_strategy):
  """{label: per-seed test accuracies} -> one shift's result as the study writes it."""
  rows = {label: {"per_seed": [{"test_accuracy": a} for a in accs], "changed_params": 1,
                  "changed_stats": 0} for label, accs in per_strategy.items()}
  return {"relative_gradient_norm": {b: 1.0 for b in BLOCKS}, "strategies": rows}


def _shift(best, offsets):
  base = np.array([0.90, 0.91, 0.89, 0.90, 0.92])
  accs = {b: base + offsets.get(b, 0.0) for b in BLOCKS}
  accs["all"] = base + 0.01
  return _result(accs)


def test_ci95_is_the_t_interval_of_the_mean():
  x = [0.1, 0.3, 0.2, 0.4]
  want = stats.t.ppf(0.975, 3) * np.std(x, ddof=1) / 2
  assert surgical.ci95(x) == pytest.approx(want, rel=1e-12)
  assert np.isnan(surgical.ci95([0.5]))


@pytest.mark.parametrize("kind,offsets,label", [
    ("input", {"block1": 0.05}, "reproduced"),                  # the paper's block wins
    ("output", {"block2": 0.05}, "not reproduced"),             # another wins every seed
    ("feature", {"block2": 0.0, "block4": np.array([0.02, -0.01, 0.0, -0.005, 0.001])},
     "inconclusive"),                                            # ahead within the noise
])
def test_verdict(kind, offsets, label):
  results = {f"{kind}:mnist": _shift(None, offsets)}
  text = surgical_report.verdict(results, [f"{kind}:mnist"])
  assert text.startswith(f"**{label}**"), text


def test_averaging_over_shifts_is_per_seed():
  a = _result({"all": [0.8, 0.9], "block1": [0.7, 0.7]})
  b = _result({"all": [0.6, 0.5], "block1": [0.9, 0.9]})
  avg = surgical_report.averaged({"input:mnist:x": a, "input:mnist:y": b},
                                 ["input:mnist:x", "input:mnist:y"])
  np.testing.assert_allclose(avg["all"][2], [0.7, 0.7])
  assert avg["all"][0] == pytest.approx(0.7) and avg["all"][1] == pytest.approx(0.0)
  table = surgical_report.format_tables({"input:mnist:x": a, "input:mnist:y": b})
  assert "| mean | x | y |" in table.replace("changes (params / BN stats) | ", "")


def test_many_shifts_are_rows_with_each_rows_best_in_bold():
  names = [f"c{i}" for i in range(2 * surgical_report.MAX_COLUMNS)]  # even: block1 mean 80
  results = {f"input:mnist:{n}": _result({"all": [0.8, 0.9],
                                          "block1": [0.7 + 0.2 * (i % 2)] * 2})
             for i, n in enumerate(names)}
  lines = surgical_report.format_tables(results).splitlines()
  assert "| shift | all | block1 |" in lines
  assert "| mean | **85.0 ± 63.5** | 80.0 ± 0.0 |" in lines  # averaged per seed
  assert "| c0 | **85.0 ± 63.5** | 70.0 ± 0.0 |" in lines
  assert "| c1 | 85.0 ± 63.5 | **90.0 ± 0.0** |" in lines


def test_lpft_table_has_a_row_per_evaluation_set_and_the_ood_mean_per_seed():
  row = lambda test, a, b: {"test_accuracy": test, "a_accuracy": a, "b_accuracy": b}
  results = {"lpft:mnist": {"strategies": {
      "all": {"per_seed": [row(0.9, 0.5, 0.7), row(0.9, 0.7, 0.5)]},
      "lp_ft": {"per_seed": [row(0.8, 0.6, 0.8), row(0.8, 0.8, 0.6)]}}}}
  lines = surgical_report.lpft_table(results, "lpft:mnist").splitlines()
  assert lines[0] == "| evaluation set | all | lp_ft |"
  assert lines[2] == "| ID (test) | **90.0 ± 0.0** | 80.0 ± 0.0 |"
  assert lines[-1] == "| **OOD mean** | 60.0 ± 0.0 | **70.0 ± 0.0** |"  # per seed: 0.6, 0.6
