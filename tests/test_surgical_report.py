"""The study's tables and verdicts (`jaxtl.studies.surgical.report`) on made-up runs:
intervals over pre-trainings, and `jaxtl.stats.verdict`'s rule applied per shift kind."""
import numpy as np
import pytest

from jaxtl import stats
from jaxtl.studies.surgical import report as surgical_report

BLOCKS = ("block1", "block2", "block3", "block4", "head")


def _result(per_strategy, source=0.99, num_classes=10):
  """{label: (P, F) test accuracies} -> one shift's result as the study writes it."""
  rows = {}
  for label, accs in per_strategy.items():
    accs = np.atleast_2d(np.asarray(accs, np.float64))
    rows[label] = {"per_seed": [{"pretrain_seed": p, "seed": 100 * p + s,
                                 "test_accuracy": float(a)}
                                for p, row in enumerate(accs) for s, a in enumerate(row)],
                   "changed_params": 1, "changed_stats": 0, "on_edge": False}
  return {"relative_gradient_norm": {b: 1.0 for b in BLOCKS}, "strategies": rows,
          "source_test_accuracy": source, "num_classes": num_classes}


def _shift(offsets, **kw):
  base = np.array([[0.90, 0.91], [0.89, 0.90], [0.92, 0.91]])  # 3 pre-trainings x 2 runs
  accs = {b: base + np.asarray(offsets.get(b, 0.0)) for b in BLOCKS}
  accs["all"] = base + 0.01
  return _result(accs, **kw)


@pytest.mark.parametrize("kind,offsets,label", [
    ("input", {"block1": 0.05}, "reproduced"),                  # the paper's block wins
    ("output", {"block2": 0.05}, "not reproduced"),             # another wins every run
    ("feature", {"block4": np.array([[0.05, -0.04], [-0.06, 0.07], [0.04, 0.0]])},
     "inconclusive"),                                           # ahead within wide noise
    ("feature", {"block3": 0.05}, "reproduced"),                # middle: block2 or block3
    ("spurious", {}, "not distinguishable"),                    # every block equal
])
def test_verdict_per_shift_kind(kind, offsets, label):
  results = {f"{kind}:mnist": _shift(offsets)}
  text = surgical_report.verdict(results, [f"{kind}:mnist"])
  assert text.startswith(f"**{label}**"), text


def test_no_verdict_near_chance_and_an_error_without_the_papers_block():
  near = {"input:mnist": _shift({"block1": 0.05}, source=0.12)}
  assert surgical_report.verdict(near, ["input:mnist"]).startswith("**no verdict**")
  missing = _shift({})
  del missing["strategies"]["block1"]
  with pytest.raises(KeyError, match="block1"):
    surgical_report.verdict({"input:mnist": missing}, ["input:mnist"])


def test_intervals_are_over_pretrainings_and_shifts_average_run_by_run():
  a = _result({"all": [[0.8, 0.9], [0.6, 0.7]], "block1": [[0.7, 0.7], [0.7, 0.7]]})
  b = _result({"all": [[0.6, 0.5], [0.8, 0.7]], "block1": [[0.9, 0.9], [0.9, 0.9]]})
  avg = surgical_report.averaged({"input:mnist:x": a, "input:mnist:y": b},
                                 ["input:mnist:x", "input:mnist:y"])
  np.testing.assert_allclose(avg["all"][2], [[0.7, 0.7], [0.7, 0.7]])
  assert avg["all"][0] == pytest.approx(0.7) and avg["all"][1] == pytest.approx(0.0)
  # Two runs of one pre-training do not narrow the interval: it is over the 2 means.
  one = surgical_report.averaged({"input:mnist:x": a}, ["input:mnist:x"])["all"]
  assert one[1] == pytest.approx(stats.ci95([0.85, 0.65]))
  table = surgical_report.format_tables({"input:mnist:x": a, "input:mnist:y": b})
  assert "| mean | x | y |" in table.replace("changes (params / BN stats) | ", "")
  assert "2 pre-trainings x 2 fine-tuning runs" in table


def test_many_shifts_are_rows_with_the_rows_not_significantly_below_the_best_in_bold():
  names = [f"c{i}" for i in range(2 * surgical_report.MAX_COLUMNS)]  # even: block1 mean 80
  noise = np.array([[0.0], [0.01], [-0.01], [0.0]])  # 4 pre-trainings, shared by the rows
  results = {f"input:mnist:{n}": _result({"all": 0.85 + noise,
                                          "block1": 0.7 + 0.2 * (i % 2) + noise,
                                          "block2": 0.851 + noise + [[0.01], [-0.01], [0], [0]]})
             for i, n in enumerate(names)}
  lines = surgical_report.format_tables(results).splitlines()
  assert "| shift | all | block1 | block2 |" in lines
  # c0: block1 15 points below on every run; block2 level with all within its noise.
  assert "| c0 | **85.0 ± 1.3** | 70.0 ± 1.3 | **85.1 ± 1.3** |" in lines
  assert "| c1 | 85.0 ± 1.3 | **90.0 ± 1.3** | 85.1 ± 1.3 |" in lines
  assert "| mean | **85.0 ± 1.3** | 80.0 ± 1.3 | **85.1 ± 1.3** |" in lines  # run by run


def test_lpft_table_has_a_row_per_evaluation_set_and_the_ood_mean_run_by_run():
  row = lambda p, test, a, b: {"pretrain_seed": p, "test_accuracy": test, "a_accuracy": a,
                               "b_accuracy": b}
  results = {"lpft:mnist": {"num_classes": 10, "source_test_accuracy": 0.99, "strategies": {
      "all": {"per_seed": [row(0, 0.9, 0.5, 0.7), row(1, 0.9, 0.7, 0.5)]},
      "lp_ft": {"per_seed": [row(0, 0.8, 0.6, 0.8), row(1, 0.8, 0.8, 0.6)]}}}}
  lines = surgical_report.lpft_table(results, "lpft:mnist").splitlines()
  assert lines[0] == "| evaluation set | all | lp_ft |"
  assert lines[2] == "| ID (test) | **90.0 ± 0.0** | 80.0 ± 0.0 |"
  assert lines[-1] == "| **OOD mean** | 60.0 ± 0.0 | **70.0 ± 0.0** |"  # per run: 0.6, 0.6



def test_lpft_verdicts_usps_and_mnist_c_apiece_and_in_distribution():
  noise = np.array([0.01, -0.01, 0.0, 0.005])  # 4 pre-trainings
  row = lambda p, test, usps, c: {"pretrain_seed": p, "test_accuracy": test,
                                  "usps_accuracy": usps, "fog_accuracy": c}
  def strategy(test, usps, fog):
    return {"per_seed": [row(p, test + n, usps + n, fog + n) for p, n in enumerate(noise)],
            "on_edge": False}
  results = {"lpft:mnist": {"num_classes": 10, "source_test_accuracy": 0.99, "strategies": {
      "all": strategy(0.95, 0.60, 0.70), "lp": strategy(0.80, 0.60, 0.60),
      "lp_ft": strategy(0.90, 0.70, 0.70)}}}
  lines = surgical_report.lpft_verdict(results, "lpft:mnist").splitlines()
  assert lines[0].startswith("- OOD, USPS: **reproduced**")  # +10 on every run
  assert lines[1] == "  (premise: lp − all = +0.0 ± 0.0)"
  # The probe 10 points below fine-tuning: features not good there, no test of the claim.
  assert lines[2].startswith("- OOD, MNIST-C mean: **no test of the claim** (premise not met")
  assert lines[3].startswith("- ID (test): **not reproduced**")  # all ahead by 5


def test_a_row_picked_on_its_grids_edge_withholds_the_verdict():
  results = {"input:mnist": _shift({"block1": 0.05})}
  results["input:mnist"]["strategies"]["block2"]["on_edge"] = True
  assert surgical_report.verdict(results, ["input:mnist"]).startswith("**no verdict**")


def test_a_study_of_one_pre_training_is_refused_by_name():
  """Runs without a pre-training seed come from the protocol before issue 35: an error
  that says so, not a table whose intervals leave the pre-training's variance out."""
  results = {"input:mnist": _shift({})}
  for r in results["input:mnist"]["strategies"]["block1"]["per_seed"]:
    del r["pretrain_seed"]
  with pytest.raises(ValueError, match="input:mnist / block1: .*before issue 35"):
    surgical_report.format_tables(results)


def test_a_metric_some_rows_lack_leaves_those_rows_out_of_its_table():
  """The converged probe (`lp`) has no worst-group accuracy: the worst-group table leaves
  it out instead of failing (the output study's spurious shift)."""
  row = lambda acc, worst=None: {"per_seed": [
      dict({"pretrain_seed": p, "test_accuracy": acc + 0.01 * p},
           **({} if worst is None else {"test_worst_group_accuracy": worst + 0.01 * p}))
      for p in range(3)]}
  results = {"spurious:mnist": {"strategies": {"head": row(0.9, 0.8), "lp": row(0.91)}}}
  worst = surgical_report.averaged(results, ["spurious:mnist"], "test_worst_group_accuracy")
  assert list(worst) == ["head"]
  np.testing.assert_allclose(worst["head"][0], 0.81)
  assert list(surgical_report.averaged(results, ["spurious:mnist"])) == ["head", "lp"]


def test_the_digits_demo_has_enough_target_images_for_every_shift():
  """Each shift of the embedded digits variant holds num_train + num_val target training
  images (its feature shift's target, digits 5-9 outside the pool, has the fewest)."""
  from experiments.configs import surgical as surgical_configs  # pylint: disable=import-outside-toplevel
  from jaxtl.studies.surgical import tasks  # pylint: disable=import-outside-toplevel
  config = surgical_configs.get_config("digits")
  for spec in config.shifts:
    task = tasks.shift_task(config, spec)
    assert len(task.target_train) >= config.num_train + config.num_val, spec


def test_a_verdict_on_another_metric_reads_that_metric():
  """The spurious shift's second verdict is on worst-group accuracy: head best on average,
  block2 best on its worst group."""
  results = {"spurious:mnist": _shift({"head": 0.05})}
  for label, row in results["spurious:mnist"]["strategies"].items():
    for r in row["per_seed"]:
      r["test_worst_group_accuracy"] = r["test_accuracy"] - 0.2 + (0.1 if label == "block2" else 0)
  assert surgical_report.verdict(results, ["spurious:mnist"]).startswith("**reproduced**")
  worst = surgical_report.verdict(results, ["spurious:mnist"], "test_worst_group_accuracy")
  assert worst.startswith("**not reproduced**") and "best here: block2" in worst


def test_each_shift_of_a_group_is_also_judged_alone_and_counted():
  results = {"input:mnist:a": _shift({"block1": 0.05}),   # block1 ahead on every run
             "input:mnist:b": _shift({"block1": 0.04}),
             "input:mnist:c": _shift({"block3": 0.05})}   # block3 ahead on every run
  specs = sorted(results)
  line = surgical_report.per_shift(results, specs)
  # each with the paper's block minus the best other single block, in points
  assert "*reproduced* on 2 (a +5.0, b +4.0); *not reproduced* on 1 (c -5.0)" in line, line
  assert line in surgical_report.format_tables(results)
  assert surgical_report.per_shift(results, specs[:1]) == ""  # one shift: its verdict
  assert surgical_report.per_shift({"spurious:x": _shift({})}, ["spurious:x"]) == ""


def test_the_mean_without_the_affine_warps_is_judged_too():
  results = {"input:mnist:shot_noise": _shift({"block1": 0.05}),  # block1 ahead on every run
             "input:mnist:fog": _shift({"block1": 0.04}),
             "input:mnist:translate": _shift({"block1": -0.3})}  # far behind: sways the mean
  specs = list(results)
  assert surgical_report.verdict(results, specs).startswith("**not reproduced**")
  line = surgical_report.without_warps(results, specs)
  assert line.startswith("On the mean of the 2 corruptions that are not warps of the whole "
                         "image (without translate; exploratory"), line
  assert "**reproduced**" in line, line
  assert line in surgical_report.format_tables(results)
  # Nothing to add without a warp, with a single corruption left, or for another kind.
  assert surgical_report.without_warps(results, specs[:2]) == ""
  assert surgical_report.without_warps(results, specs[1:]) == ""
  assert surgical_report.without_warps({"feature:x": _shift({})}, ["feature:x"]) == ""


def test_leave_one_out_names_the_shift_a_verdict_rests_on(tmp_path):
  """The mean's verdict without each shift in turn: a shift whose noise swamps the mean
  (block1 swinging by 30 points between pre-trainings) is the one whose removal changes it."""
  import json  # pylint: disable=import-outside-toplevel
  from jaxtl.studies import documents  # pylint: disable=import-outside-toplevel
  swing = np.array([[0.3, 0.3], [-0.3, -0.3], [0.3, 0.3]])
  metrics = {"input:mnist:a": _shift({"block3": 0.02}), "input:mnist:b": _shift({"block3": 0.02}),
             "input:mnist:c": _shift({"block1": swing})}
  (tmp_path / "surgical" / "x").mkdir(parents=True)
  (tmp_path / "surgical" / "x" / "results.json").write_text(json.dumps({"metrics": metrics}))
  text = documents.surgical_leave_one_out("x")(str(tmp_path))
  assert text.startswith("input:mnist, the verdict on the mean of 2 shifts"), text
  assert "*not reproduced* without c; *inconclusive* without a, b." in text, text
