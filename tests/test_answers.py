"""The pre-training study's answers (`jaxtl.studies.pretraining.answers`) from hand-made summaries:
the counts and the comparisons follow the 95% CIs as the module states."""
from jaxtl.studies.pretraining import answers, study


def cell(accuracy, ci95=0.01):
  return {"accuracy": accuracy, "ci95": ci95, "seeds": 1}


def test_labels_counts_settings_by_whether_the_cis_part():
  summary = {
      "scratch": {"30": {"ncm_5w1s": cell(0.40), "ncm_5w5s": cell(0.60)}},
      "supervised": {"30": {"ncm_5w1s": cell(0.90), "ncm_5w5s": cell(0.80)}},
      "rotation": {"30": {"ncm_5w1s": cell(0.70), "ncm_5w5s": cell(0.79)}},
      "mae": {"30": {"ncm_5w1s": cell(0.60), "ncm_5w5s": cell(0.61)}}}
  text = answers.answer(summary, "omniglot")
  assert text.startswith(
      "Do you need labels to pre-train? On Omniglot, supervised pre-training leads the best "
      "label-free objective (rotation, mae) beyond both 95% CIs in 1 of 2 settings, is "
      "within them in 1 and trails in 0; the widest gap: NCM, 5-way 1-shot, supervised "
      "90.00 +- 1.00 against rotation 70.00 +- 1.00.")
  # mae at 61 against scratch's 60 is within the CIs (a 1-point gap, 2 points of CI).
  assert text.endswith("Against no pre-training, settings won beyond the CIs: supervised "
                       "2 of 2, rotation 2 of 2, mae 1 of 2.")


def test_labels_splits_digits_targets_by_whether_they_share_the_sources_classes():
  # USPS labels MNIST's digits; Fashion-MNIST's classes are others. "lp_ft_fashion_mnist"
  # must not be read as an MNIST target.
  summary = {
      "supervised": {"10": {"linear_probe_mnist100": cell(0.90), "linear_probe_usps100":
                            cell(0.80), "lp_ft_fashion_mnist100": cell(0.60)}},
      "simclr": {"10": {"linear_probe_mnist100": cell(0.70), "linear_probe_usps100":
                        cell(0.79), "lp_ft_fashion_mnist100": cell(0.70)}}}
  text = answers.answer(summary, "mnist")
  assert ("By target: on its own classes (MNIST, USPS) it leads in 1, is within in 1 and "
          "trails in 0 of 2; on other classes (Fashion-MNIST) it leads in 0, is within in 0 "
          "and trails in 1 of 1.") in text
  assert "By target" not in answers.answer(
      {o: {"10": {"linear_probe_mnist100": c["10"]["linear_probe_mnist100"]}}
       for o, c in summary.items()}, "mnist")  # one kind of target: nothing to split
  assert [study.setting_target(s) for s in ("lp_ft_fashion_mnist100", "linear_probe_usps1000",
                                            "ncm_5w1s")] == ["fashion_mnist", "usps", ""]


def test_labels_says_nothing_before_a_label_free_objective_has_run():
  summary = {"supervised": {"30": {"ncm_5w1s": cell(0.9)}},
             "scratch": {"30": {"ncm_5w1s": cell(0.4)}}}
  assert answers.answer(summary) == ""


def test_diversity_averages_each_objectives_drop_and_names_the_pattern():
  summary = {
      "supervised": {"1": {"a_5w1s": cell(0.50, 0.03), "a_5w5s": cell(0.60, 0.03)},
                     "30": {"a_5w1s": cell(0.70, 0.04), "a_5w5s": cell(0.80, 0.04)}},
      "mae": {"1": {"a_5w1s": cell(0.65, 0.03), "a_5w5s": cell(0.75, 0.03)},
              "30": {"a_5w1s": cell(0.66, 0.04), "a_5w5s": cell(0.76, 0.04)}}}
  text = answers.answer(summary, "omniglot")
  # Each drop's half-width is hypot(3, 4) = 5 points; over two settings, 5 * sqrt(2) / 2.
  assert ("going from 30 alphabets down to 1 (the same number of images) changes accuracy, "
          "averaged over 2 settings, by: supervised -20.0 +- 3.5 points, mae -1.0 +- 3.5 "
          "points. Narrower data lowers it beyond the CIs for supervised and raises it for "
          "none; mae degrades least: the masked objective degrading least is El-Nouby et "
          "al.'s pattern, seen here too.") in text


def test_diversity_tells_a_masked_objective_within_the_cis_apart_from_a_miss():
  within = {"rotation": {"1": {"s": cell(0.70)}, "10": {"s": cell(0.70)}},
            "mae": {"1": {"s": cell(0.69)}, "10": {"s": cell(0.70)}}}
  assert "within the CIs of rotation's" in answers.answer(within, "mnist")
  beyond = {"rotation": {"1": {"s": cell(0.70)}, "10": {"s": cell(0.70)}},
            "mae": {"1": {"s": cell(0.50)}, "10": {"s": cell(0.70)}}}
  text = answers.answer(beyond, "mnist")
  assert "On MNIST, going from 10 classes down to 1" in text
  assert text.endswith("El-Nouby et al.'s pattern (masked degrades least) does not appear here.")


def test_one_diversity_table_has_a_row_per_setting_and_a_column_per_objective():
  summary = {"scratch": {"10": {"linear_probe_usps100": cell(0.5), "lp_ft_mnist1000": cell(0.6)}},
             "mae": {"10": {"linear_probe_usps100": cell(0.7, 0.02)}}}
  lines = study.format_table(summary, "mnist").splitlines()
  assert lines[0].startswith("Pre-trained on MNIST (10 classes) with each objective")
  assert lines[2:] == ["| transfer | scratch | mae |", "|---|---:|---:|",
                       "| linear probe, USPS, 100 labels | 50.00 +- 1.00 | 70.00 +- 2.00 |",
                       "| LP-FT, MNIST, 1000 labels | 60.00 +- 1.00 |  |"]


def test_diversity_leaves_no_pretraining_out_of_the_drops_and_counts_wins_over_it():
  summary = {
      "scratch": {"1": {"a": cell(0.50), "b": cell(0.60)}, "30": {"a": cell(0.50), "b": cell(0.60)}},
      "supervised": {"1": {"a": cell(0.70), "b": cell(0.80)}, "30": {"a": cell(0.51), "b": cell(0.55)}},
      "mae": {"1": {"a": cell(0.60), "b": cell(0.61)}, "30": {"a": cell(0.60), "b": cell(0.65)}}}
  text = answers.answer(summary, "omniglot")
  assert ("by: supervised +22.0 +- 1.0 points, mae -2.0 +- 1.0 points. Narrower data "
          "lowers it beyond the CIs for mae and raises it for supervised; supervised "
          "degrades least") in text  # no scratch
  assert text.endswith("Settings won over no pre-training beyond the CIs, at 1 / 30: "
                       "supervised 2 / 0, mae 1 / 2 of 2.")
