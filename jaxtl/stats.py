"""One interval formula and one verdict rule for every study (surgical fine-tuning, LP-FT).

Results have two levels of randomness: P pre-training seeds, each fine-tuned with F
seeds, as arrays shaped (P, F) ((n,) means P=n, F=1). Fine-tuning seeds of one
pre-trained model share its draw, so they are not independent samples of the method:
`estimate` averages over F within each pre-training seed first and takes the Student-t
interval over the P group means (a two-stage, hierarchical t-interval). F seeds thus
lower the noise of each group mean but never shrink the interval below what the
pre-training variance allows. Where the second axis is crossed instead (every seed scored
on the same T few-shot tasks), `estimate(..., crossed=True)` counts the tasks' draw too.

    from jaxtl import stats
    e = stats.estimate(accuracies)             # (P, F) -> mean, ci95, p_value, groups
    d = stats.paired(block3, block1)           # block3 - block1, seed by seed
    v = stats.verdict(rows, expected="block1", candidates=blocks, chance=0.1)
    v.markdown()                               # "**reproduced**: paper: block1; ..."

The verdict rule (`verdict`) is symmetric: "not reproduced" needs another row to be
significantly better than the expected one, "reproduced" needs the expected row to be
significantly better than every other (one-sided tests, Holm-corrected, the same level
both ways); rows equal within a margin are "not distinguishable", anything else is
"inconclusive". Near-chance models and untuned rows (a pick on a grid's edge) give "no
verdict". (A rule that calls the expected row reproduced when it is merely best by mean
says "reproduced" for a quarter of studies of five equal rows at 3 x 2 seeds, measured
by simulation during review; this one does not.)
"""
import dataclasses
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import stats as scipy_stats

# Every `Verdict.label`, for reports that count them.
LABELS = ("reproduced", "not reproduced", "not distinguishable", "inconclusive", "no verdict")


def ci95(values) -> float:
  """Half-width of the 95% Student-t interval of the mean of a 1-D sample (one value per
  independent draw): t.ppf(0.975, n - 1) * std(ddof=1) / sqrt(n); nan for fewer than 2
  values (no spread can be estimated from one draw); a ValueError for more than one
  dimension (use `estimate` for (P, F))."""
  values = np.asarray(values, np.float64)
  if values.ndim > 1:
    raise ValueError(f"ci95 takes a 1-D sample, got shape {values.shape}; use "
                     "stats.estimate for (pre-training, fine-tuning) seeds.")
  n = values.size
  if n < 2:
    return float("nan")
  return float(scipy_stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n))


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A mean over pre-training seeds with its hierarchical 95% interval.

  Attributes:
    mean: mean of the group means (the grand mean: groups are equally sized).
    ci95: half-width of the t-interval over the group means (nan for one group).
    groups: per-pre-training-seed means (read-only), the sample the interval uses.
    n_groups: P, the number of pre-training seeds.
    n_per_group: F, the number of fine-tuning seeds per pre-training seed.
    p_value: two-sided t-test of the mean against 0 (nan for one group); meaningful
      for differences (`paired`).
    se, df: the mean's standard error and its t degrees of freedom (ci95's and the
      tests' inputs; nan where no spread can be estimated).
  """
  mean: float
  ci95: float
  groups: np.ndarray = dataclasses.field(compare=False, repr=False)
  n_groups: int
  n_per_group: int
  p_value: float
  se: float = float("nan")
  df: float = float("nan")


def _as_seeds(values, name="values") -> np.ndarray:
  """values as a float64 (P, F) array, or a ValueError saying what is wrong with it."""
  try:
    array = np.asarray(values, np.float64)
  except (ValueError, TypeError) as e:  # ragged nested lists, non-numbers
    raise ValueError(f"{name} must be a rectangular (pre-training, fine-tuning) array of "
                     f"numbers: {e}") from None
  if array.ndim == 1:
    array = array[:, None]
  if array.ndim != 2:
    raise ValueError(f"{name} must be shaped (P, F) or (P,), got {array.shape}.")
  if array.size == 0:
    raise ValueError(f"{name} is empty (shape {array.shape}): no seeds to estimate from.")
  if not np.all(np.isfinite(array)):
    bad = [tuple(int(i) for i in ix) for ix in np.argwhere(~np.isfinite(array))[:5]]
    raise ValueError(f"{name} holds NaN or infinite values at (pre-training, fine-tuning) "
                     f"seeds {bad}: a failed run must be rerun or dropped explicitly.")
  return array


def _t_test(mean: float, se: float, df: float, sided: int = 2) -> float:
  """p of the t-test of `mean` against 0 (two-sided, or one-sided that it is > 0); with
  zero spread, the limit (scipy would warn and give nan); nan without degrees of freedom."""
  if not df >= 1:
    return float("nan")
  if se == 0:
    return (1.0 if mean == 0 else 0.0) if sided == 2 else (0.0 if mean > 0 else 1.0)
  t = mean / se
  return float(2 * scipy_stats.t.sf(abs(t), df) if sided == 2 else scipy_stats.t.sf(t, df))


def _crossed(array: np.ndarray) -> tuple[float, float]:
  """(se, df) of the grand mean of an (S, T) array whose T columns are one crossed draw
  (the same tasks for every seed): x_st = mu + a_s + b_t + e_st, so
  Var(mean) = (MS_seeds + MS_tasks - MS_residual) / (S T) from the two-way ANOVA's mean
  squares, never below the seeds-only variance (MS_seeds / (S T)), which it equals when
  tasks do not matter. Degrees of freedom: Satterthwaite's, with MS_seeds at its 80% upper
  bound and never below S - 1; plain Satterthwaite is liberal when seeds dominate and S
  is small (a small MS_seeds by chance lowers the error and raises the df together: 0.92
  coverage at S = 3, measured in review), this 0.95 to 0.97. One seed: nan (no seed
  variance can be estimated)."""
  s, t = array.shape
  if s == 1:
    return float("nan"), float("nan")
  rows, cols, grand = array.mean(1), array.mean(0), array.mean()
  ms_s = t * np.sum((rows - grand) ** 2) / (s - 1)
  ms_t = s * np.sum((cols - grand) ** 2) / (t - 1)
  ms_e = np.sum((array - rows[:, None] - cols + grand) ** 2) / ((s - 1) * (t - 1))
  total = ms_s + ms_t - ms_e
  if total <= ms_s:  # tasks add nothing measurable: the seeds-only interval
    return float(np.sqrt(ms_s / (s * t))), float(s - 1)
  upper = ms_s * (s - 1) / scipy_stats.chi2.ppf(0.2, s - 1)
  df = (upper + ms_t - ms_e) ** 2 / (
      upper ** 2 / (s - 1) + ms_t ** 2 / (t - 1) + ms_e ** 2 / ((s - 1) * (t - 1)))
  return float(np.sqrt(total / (s * t))), float(max(s - 1, df))


def estimate(values, crossed: bool = False) -> Estimate:
  """Mean and 95% interval that count pre-training variance.

  Averages over the F fine-tuning seeds within each pre-training seed, then takes the
  Student-t interval over the P per-pre-training means (a two-stage, hierarchical
  t-interval): fine-tuning seeds share their pre-trained model, so pooling all P*F
  values as independent would understate the interval.

  Args:
    values: (P, F) array (pre-training x fine-tuning seeds), or (P,) meaning F = 1.
    crossed: the second axis is not nested in the first but one draw shared by every
      seed (T few-shot tasks, the same for each): the interval counts both draws
      (`_crossed`), so it also holds for other tasks of the same classes (not for other
      classes: their draw is not in it).

  Returns:
    The `Estimate` over the P group means.

  Raises:
    ValueError: on empty, ragged, NaN/infinite or more-than-2-D input.
  """
  array = _as_seeds(values)
  groups = array.mean(axis=1)
  groups.setflags(write=False)
  n, mean = groups.size, float(groups.mean())
  if crossed and array.shape[1] > 1:
    se, df = _crossed(array)
  else:
    se, df = (float(groups.std(ddof=1) / np.sqrt(n)), float(n - 1)) if n > 1 else (
        float("nan"), float("nan"))
  half = float(scipy_stats.t.ppf(0.975, df) * se) if df >= 1 else float("nan")
  return Estimate(mean=mean, ci95=half, groups=groups, n_groups=n,
                  n_per_group=int(array.shape[1]), p_value=_t_test(mean, se, df), se=se, df=df)


def paired(a, b, crossed: bool = False) -> Estimate:
  """`estimate` of a - b taken seed by seed, so that the noise both share cancels: a and b
  of one shape, (P, F) or (P,), whose entries ran with the same pre-training and
  fine-tuning seeds (or, `crossed`, tasks); its p_value tests a - b = 0. A ValueError if
  the shapes differ (the seeds cannot be matched) or as `estimate`."""
  a, b = _as_seeds(a, "a"), _as_seeds(b, "b")
  if a.shape != b.shape:
    raise ValueError(f"paired seeds need equal shapes, got a {a.shape} and b {b.shape}.")
  return estimate(a - b, crossed)


def holm_adjusted(p_values) -> np.ndarray:
  """Holm-Bonferroni adjusted p-values (capped at 1; nan stays nan).

  A nan p (a test that could not run) counts as one of the m hypotheses, as p = 1: it is
  never rejected and still costs its share of alpha, which keeps the correction
  conservative.
  """
  p = np.asarray(p_values, np.float64)
  if p.ndim != 1:
    raise ValueError(f"p_values must be 1-D, got shape {p.shape}.")
  filled = np.where(np.isnan(p), 1.0, p)
  order = np.argsort(filled, kind="stable")
  m = p.size
  steps = np.minimum(1.0, (m - np.arange(m)) * filled[order])
  adjusted = np.empty(m)
  adjusted[order] = np.maximum.accumulate(steps)
  adjusted[np.isnan(p)] = np.nan
  return adjusted


def holm(p_values, alpha: float = 0.05) -> np.ndarray:
  """Holm-Bonferroni step-down rejections at family-wise error rate `alpha` (True where
  rejected): sorted ascending, the k-th smallest p (k = 0, 1, ...) is rejected if it and
  every smaller one satisfy p <= alpha / (m - k). Controls the chance of any false claim
  over all m comparisons, without Bonferroni's loss of power; nan (a test that could not
  run) is never rejected."""
  adjusted = holm_adjusted(p_values)
  return np.where(np.isnan(adjusted), False, adjusted <= alpha)


@dataclasses.dataclass(frozen=True)
class Verdict:
  """Whether a study's numbers back a paper's claim that `expected` is best.

  Attributes:
    label: "reproduced", "not reproduced", "inconclusive" or "no verdict".
    expected: the row the paper expects to be best.
    best: the row with the highest mean accuracy here.
    text: the numbers behind the label, for a report.
  """
  label: str
  expected: str
  best: str
  text: str

  def markdown(self) -> str:
    return f"**{self.label}**: {self.text}"


def near_chance(acc: float, chance: float) -> bool:
  """Whether accuracy `acc` is below a quarter of the way from chance to 1: such a model
  learnt too little for its ranking of strategies to say anything about the paper."""
  return acc < chance + 0.25 * (1 - chance)


def format_estimate(e: Estimate, scale: float = 100, digits: int = 1,
                    signed: bool = False) -> str:
  """'91.7 ± 0.4': mean and 95% half-width, times `scale` (percent by default), with
  `digits` decimals; `signed` prefixes the mean's sign (for differences: '+1.3 ± 0.6')."""
  sign = "+" if signed else ""
  return f"{scale * e.mean:{sign}.{digits}f} ± {scale * e.ci95:.{digits}f}"


def one_sided_p(e: Estimate) -> float:
  """p of the one-sided t-test that the mean difference `e` is > 0."""
  return _t_test(e.mean, e.se, e.df, sided=1)


def detectable(e: Estimate, m: int, alpha: float = 0.05) -> float:
  """The smallest difference a one-sided test at alpha / m (Holm's strictest step) would
  call significant with the spread of `e`: the study's resolution, in accuracy units."""
  if not e.df >= 1:
    return float("nan")
  return float(scipy_stats.t.ppf(1 - alpha / m, e.df) * e.se)


def verdict(rows: Mapping[str, np.ndarray], expected, candidates: Sequence[str],
            chance: float, floor: Optional[float] = None, margin: float = 0.01,
            alpha: float = 0.05, on_edge: Sequence[str] = (), crossed: bool = False
            ) -> Verdict:
  """The claim "the row `expected` (or the best of a set of rows) has the highest
  accuracy among `candidates`", judged by one symmetric rule.

  e* is the expected row (of a set, the one with the highest mean). For every other
  candidate c, d_c = `paired`(c, e*) over the seeds; each direction is a one-sided t-test
  over the pre-trainings' means, Holm-corrected over the m comparisons:
    * "no verdict": a candidate's pick sat on its grid's edge (`on_edge`: not tuned), or
      `floor` (the source model's accuracy) or the best candidate's mean is `near_chance`.
    * "not reproduced": some c is significantly better than e*.
    * "reproduced": e* is significantly better than every c.
    * "not distinguishable": every d_c's 95% interval lies within +-`margin`: the
      candidates are equal to within the margin, so the claimed ordering is absent.
    * "inconclusive" otherwise; the text gives the smallest difference the study could
      have detected (`detectable`).
  Both "reproduced" and "not reproduced" need the same evidence: significance at the
  same level, in opposite directions.

  Args:
    rows: label -> accuracies in [0, 1], (P, F) or (P,), all with the same seeds.
    expected: the row (or rows) the paper expects to be best.
    candidates: the rows competing (the expected ones are added if absent).
    chance: accuracy of guessing (1 / number of classes).
    floor: an accuracy that must be clear of chance for the study to mean anything (the
      source model's test accuracy), or None.
    margin: differences within it count as no difference (0.01 is 1 point).
    alpha: family-wise error rate of each direction's comparisons.
    on_edge: rows whose pick sat on the edge of their grid.
    crossed: the rows' second axis is tasks shared by every seed (`estimate`).

  Raises:
    KeyError: an expected row or a candidate has no row.
    ValueError: no candidate besides the expected ones, chance outside [0, 1), or seeds
      that do not match (as `paired`).
  """
  wanted = [expected] if isinstance(expected, str) else list(expected)
  labels = list(dict.fromkeys([*wanted, *candidates]))
  missing = [label for label in labels if label not in rows]
  if missing:
    raise KeyError(f"no results for {missing} (rows present: {list(rows)})")
  others = [label for label in labels if label not in wanted]
  if not others:
    raise ValueError(f"the claim that {wanted} is best needs another candidate to "
                     f"compare with; got candidates {list(candidates)}.")
  if not 0 <= chance < 1:
    raise ValueError(f"chance must be an accuracy in [0, 1), got {chance}.")
  pct = lambda x: f"{100 * x:.1f}"
  estimates = {label: estimate(rows[label], crossed) for label in labels}
  star = max(wanted, key=lambda label: estimates[label].mean)
  paper = star if len(wanted) == 1 else f"{star} (the better of {', '.join(wanted)})"
  best = max(labels, key=lambda label: estimates[label].mean)
  e = estimates[star]
  seeds = (f"intervals over {e.n_groups} seeds crossed with {e.n_per_group} tasks" if crossed
           and e.n_per_group > 1 else f"t-intervals over {e.n_groups} group means of "
           f"{e.n_per_group} run" + ("s" if e.n_per_group > 1 else ""))
  bar = chance + 0.25 * (1 - chance)
  edged = [label for label in labels if label in set(on_edge)]
  if edged:
    return Verdict("no verdict", star, best, f"the picks of {edged} sat on the edge of their "
                   "grids, so those rows were not tuned to their best")
  if floor is not None and near_chance(floor, chance):
    return Verdict("no verdict", star, best,
                   f"the source model's {pct(floor)}% is near chance ({pct(chance)}%; "
                   f"needs {pct(bar)}%), so the ranking of rows means nothing")
  if near_chance(estimates[best].mean, chance):
    return Verdict("no verdict", star, best,
                   f"the best row, {best}, reaches {pct(estimates[best].mean)}%, near "
                   f"chance ({pct(chance)}%; needs {pct(bar)}%), so the ranking of rows "
                   "means nothing")

  c = compare(rows, star, others, margin, alpha, crossed)
  diffs, shown = c.diffs, c.shown
  if c.label == "not reproduced":
    why = (f"{', '.join(c.better)} {'is' if len(c.better) == 1 else 'are each'} "
           "significantly better (one-sided Holm "
           f"p={', '.join(f'{c.up[o]:.2g}' for o in c.better)})")
    if c.within:
      why += f", though every difference lies within ±{pct(margin)} point"
  elif c.label == "reproduced":
    why = (f"{star} is significantly better than every other row (largest one-sided Holm "
           f"p={max(c.down.values()):.2g})")
  elif c.label == "not distinguishable":
    why = f"every difference lies within ±{pct(margin)} point"
  else:
    why = (f"no row is significantly better or worse; {shown} − {star} had to exceed "
           f"about {pct(c.resolution)} points to reach significance (and be larger still to "
           "be found reliably)")
  label = c.label
  text = (f"paper: {paper}; best here: {best} ({format_estimate(estimates[best])}); "
          f"{shown} − {star} = {format_estimate(diffs[shown], signed=True)}; {why} "
          f"(Holm over {len(others)} comparison{'s' if len(others) > 1 else ''} each way; "
          f"{seeds})")
  return Verdict(label, star, best, text)


@dataclasses.dataclass(frozen=True)
class Comparison:
  """`compare`'s outcome: `label` (one of LABELS but "no verdict"), `better` (the rows
  significantly better than the star), `diffs` (row − star, `paired`), `up` / `down`
  (Holm-adjusted one-sided p that each row is better / worse than the star), `within`
  (every difference within the margin), `shown` (the row with the largest difference) and
  `resolution` (the difference `shown` needed to reach significance)."""
  label: str
  better: list
  diffs: dict
  up: dict
  down: dict
  within: bool
  shown: str
  resolution: float


def compare(rows: Mapping[str, np.ndarray], star: str, others: Sequence[str],
            margin: float, alpha: float = 0.05, crossed: bool = False) -> Comparison:
  """The symmetric rule itself, in the rows' own units (`verdict` adds the guards for
  accuracies; a study whose rows are not accuracies, such as drops, calls this): one-sided
  paired t-tests of every other row against `star`, Holm over them, in both directions."""
  diffs = {c: paired(rows[c], rows[star], crossed) for c in others}
  up = dict(zip(others, holm_adjusted([one_sided_p(diffs[c]) for c in others])))
  down = dict(zip(others, holm_adjusted([one_sided_p(paired(rows[star], rows[c], crossed))
                                         for c in others])))
  better = [c for c in others if up[c] <= alpha]
  within = all(abs(diffs[c].mean) + diffs[c].ci95 < margin for c in others)
  shown = max(others, key=lambda c: diffs[c].mean)
  if better:
    label, shown = "not reproduced", max(better, key=lambda c: diffs[c].mean)
  elif all(down[c] <= alpha for c in others):
    label = "reproduced"
  elif within:
    label = "not distinguishable"
  else:
    label = "inconclusive"
  resolution = detectable(diffs[shown], len(others), alpha)
  return Comparison(label, better, diffs, up, down, within, shown, resolution)
