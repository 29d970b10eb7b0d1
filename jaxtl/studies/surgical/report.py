"""Tables, verdicts and the plot of a surgical fine-tuning study (`surgical.study`).

Every number is a mean over runs with its 95% interval from `jaxtl.stats`: averaged over
the fine-tuning runs within each pre-training, then a t-interval over pre-trainings (a
marginal interval per row; the verdicts use paired differences, run by run, which are
tighter). Shifts of one kind and dataset (the corruptions of `input:mnist:*`) are also
averaged, run by run. The verdict is `jaxtl.stats.verdict`'s one symmetric rule: is the
block the paper expects for the shift kind significantly better than every other single
block (Holm-corrected, one-sided, paired)? For LP-FT, Kumar et al.'s claims: LP-FT beats
fine-tuning (and the probe) out of distribution, on USPS and on the MNIST-C mean apiece
(each at alpha / 2), and matches or beats fine-tuning in distribution.
"""
import numpy as np

from jaxtl import stats
from jaxtl.data.corruptions import AFFINE
from jaxtl.metrics import pyplot

# Lee et al. 2023: input-level -> first block; feature-level -> the middle ones;
# output-level -> head.
EXPECTED = {"input": "first", "natural": "first", "feature": "middle", "output": "head",
            "spurious": "head"}
# Shift kinds the paper does not test as such: the verdict says it is an extension.
EXTENSIONS = {"natural": "an extension: Lee et al. test input-level shifts on image "
                         "corruptions; MNIST -> USPS is classed input-level here"}

MAX_COLUMNS = 4  # shifts beyond which a table lists them as rows


def groups(results) -> dict:
  """{"kind:dataset": [spec, ...]} in order of appearance."""
  out = {}
  for spec in results:
    kind, dataset = spec.split(":")[:2]
    out.setdefault(f"{kind}:{dataset}", []).append(spec)
  return out


def runs(results, specs, label, metric="test_accuracy") -> np.ndarray:
  """(pre-trainings, fine-tuning runs) array of `metric`, averaged over `specs` run by run."""
  per_spec = []
  for spec in specs:
    per_seed = results[spec]["strategies"][label]["per_seed"]
    if "pretrain_seed" not in per_seed[0]:
      raise ValueError(f"{spec} / {label}: runs without a pretrain_seed come from a study "
                       "before issue 35's protocol (one pre-training); rerun it.")
    pretrain = sorted({r["pretrain_seed"] for r in per_seed})
    per_spec.append([[r[metric] for r in per_seed if r["pretrain_seed"] == p]
                     for p in pretrain])
  return np.mean(np.asarray(per_spec, np.float64), axis=0)


def averaged(results, specs, metric="test_accuracy") -> dict:
  """strategy -> (mean, ci95, runs array) of `metric` averaged over `specs`; a row
  without `metric` (the converged probe has no worst-group accuracy) is left out."""
  out = {}
  for label in results[specs[0]]["strategies"]:
    if any(metric not in r for spec in specs
           for r in results[spec]["strategies"][label]["per_seed"]):
      continue
    values = runs(results, specs, label, metric)
    e = stats.estimate(values)
    out[label] = (e.mean, e.ci95, values)
  return out


def tied_best(rows: dict) -> set:
  """The row with the best mean and every row not significantly below it (one-sided
  paired t-test over the pre-trainings, 5%, uncorrected): the rows a table bolds."""
  best = max(rows, key=lambda k: np.mean(rows[k]))
  out = {best}
  for k, v in rows.items():
    d = stats.paired(rows[best], v)
    if k != best and not (d.n_groups > 1 and stats.one_sided_p(d) <= 0.05):
      out.add(k)
  return out


def _cell(mean, ci, bold=False):
  text = f"{100 * mean:.1f} ± {100 * ci:.1f}"
  return f"**{text}**" if bold else text


def strategy_table(results, columns, metric="test_accuracy", new_head=False) -> str:
  """Rows: strategies; columns: (title, specs) with specs averaged. `new_head`: the
  target's head is drawn fresh, so the network before fine-tuning is at chance."""
  stats = [(title, averaged(results, specs, metric)) for title, specs in columns]
  labels = list(stats[0][1])
  first = results[columns[0][1][0]]["strategies"]
  rows = ["| strategy | changes (params / BN stats) | " + " | ".join(t for t, _ in stats) + " |",
          "|---|---:|" + "---:|" * len(stats)]
  for label in labels:
    cells = []
    for _, s in stats:
      cells.append(_cell(s[label][0], s[label][1], label in tied_best({k: v[2] for k, v in s.items()})))
    changes = f"{first[label]['changed_params']:,} / {first[label]['changed_stats']:,}"
    rows.append(f"| {label} | {changes} | " + " | ".join(cells) + " |")
  if metric == "test_accuracy" and all("no_finetuning_test_accuracy" in results[s]
                                       for _, specs in columns for s in specs):
    cells = [f"{100 * np.mean([results[s]['no_finetuning_test_accuracy'] for s in specs]):.1f}"
             for _, specs in columns]
    title = "(no fine-tuning: a new head, chance)" if new_head else "(no fine-tuning)"
    rows.append(f"| {title} | 0 / 0 | " + " | ".join(cells) + " |")
  return "\n".join(rows)


def shift_table(results, columns, metric="test_accuracy") -> str:
  """`strategy_table` turned around, for many shifts (MNIST-C's 15 corruptions): rows are
  the columns' titles, columns the strategies; the best strategy of each row in bold."""
  stats = [(title, averaged(results, specs, metric)) for title, specs in columns]
  labels = list(stats[0][1])
  zero_shot = metric == "test_accuracy" and all("no_finetuning_test_accuracy" in results[s]
                                                for _, specs in columns for s in specs)
  rows = ["| shift | " + " | ".join(labels) + " |" + (" no fine-tuning |" if zero_shot else ""),
          "|---|" + "---:|" * (len(labels) + zero_shot)]
  for (title, s), (_, specs) in zip(stats, columns):
    top = tied_best({k: v[2] for k, v in s.items()})
    cells = [_cell(s[k][0], s[k][1], k in top) for k in labels]
    if zero_shot:
      before = [results[x]["no_finetuning_test_accuracy"] for x in specs]
      cells.append(f"{100 * np.mean(before):.1f}")
    rows.append(f"| {title} | " + " | ".join(cells) + " |")
  first = results[columns[0][1][0]]["strategies"]
  rows.append("\nWhat each strategy changes (params / BN stats): " + ", ".join(
      f"{k} {first[k]['changed_params']:,} / {first[k]['changed_stats']:,}" for k in labels) + ".")
  return "\n".join(rows)


def expected_blocks(kind: str, blocks) -> list:
  """The single-block rows Lee et al. expect to be best for a shift kind: `first`, the
  head, or for `middle` every block but the first and the last before the head."""
  body = [b for b in blocks if b != "head"]
  alias = EXPECTED[kind]
  if alias == "middle":
    return body[1:-1] or body[len(body) // 2:len(body) // 2 + 1]
  return [body[0]] if alias == "first" else ["head"]


def chance(results, specs) -> float:
  return 1.0 / results[specs[0]]["num_classes"]


def on_edge(row: dict) -> bool:
  """Whether a row's pick sat on the edge of the values it was picked from (its flag)."""
  return bool(row["on_edge"])


def _edges(results, specs) -> list:
  return sorted({label for s in specs for label, row in results[s]["strategies"].items()
                 if on_edge(row)})


def judge(results, specs, metric: str = "test_accuracy"):
  """(`stats.verdict` of Lee et al.'s block for the kind of `specs`, averaged over them,
  rows) or (a "no verdict" line, rows)."""
  blocks = list(results[specs[0]]["relative_gradient_norm"])
  expected = expected_blocks(specs[0].split(":")[0], blocks)
  rows = {label: values for label, (_, _, values) in averaged(results, specs, metric).items()}
  source = [results[s]["source_test_accuracy"] for s in specs]
  floor = None if None in source else float(np.mean(source))
  candidates = [b for b in blocks if b in rows]
  if not set(candidates) - set(expected):
    return f"**no verdict**: {expected} are the only single-block rows.", rows
  return stats.verdict(rows, expected, candidates, chance(results, specs), floor=floor,
                       on_edge=_edges(results, specs)), rows


def per_shift(results, specs, metric: str = "test_accuracy") -> str:
  """The verdict rule on each shift of a group alone, counted: how far the verdict on
  their mean rests on a few of them (descriptive: not corrected across the shifts)."""
  if len(specs) < 2 or specs[0].split(":")[0] not in EXPECTED:
    return ""
  outcomes = {}
  for spec in specs:
    v, rows = judge(results, [spec], metric)
    label = v.label if isinstance(v, stats.Verdict) else "no verdict"
    outcomes.setdefault(label, []).append(
        f"{spec.split(':', 2)[-1]} {lead(results, spec, rows):+.1f}")
  return ("Each shift alone, under the same rule (descriptive, not corrected across the "
          f"{len(specs)} shifts; after each, the paper's block minus the best other single "
          "block, points): " + "; ".join(
              f"*{label}* on {len(names)} ({', '.join(names)})"
              for label, names in sorted(outcomes.items(), key=lambda kv: -len(kv[1]))) + ".")


def lead(results, spec, rows) -> float:
  """The paper's block (the best of them) minus the best other single block, in points:
  how large the difference behind a shift's label is."""
  blocks = [b for b in results[spec]["relative_gradient_norm"] if b in rows]
  expected = expected_blocks(spec.split(":")[0], blocks)
  mean = lambda b: 100 * float(np.mean(rows[b]))
  return max(map(mean, expected)) - max((mean(b) for b in blocks if b not in expected),
                                        default=float("nan"))


def without_warps(results, specs, metric: str = "test_accuracy") -> str:
  """The verdict on the mean of a group's corruptions less the warps (`AFFINE`; Lee et
  al.'s CIFAR-10-C and ImageNet-C have none): exploratory, beside the mean of them all."""
  name = lambda spec: spec.split(":", 2)[-1]
  kept = [s for s in specs if name(s) not in AFFINE]
  if specs[0].split(":")[0] != "input" or len(kept) < 2 or len(kept) == len(specs):
    return ""
  v = judge(results, kept, metric)[0]
  dropped = ", ".join(name(s) for s in specs if s not in kept)
  return (f"On the mean of the {len(kept)} corruptions that are not warps of the whole "
          f"image (without {dropped}; exploratory: declared after the earlier study's table): "
          + (v.markdown() if isinstance(v, stats.Verdict) else v) + ".")


def verdict(results, specs, metric: str = "test_accuracy") -> str:
  """Lee et al.'s claim for this shift kind under `jaxtl.stats.verdict`, on `metric`, and
  the paper's block against tuning everything; "" for a kind the paper makes no claim
  about."""
  kind = specs[0].split(":")[0]
  if kind not in EXPECTED:
    return ""
  v, rows = judge(results, specs, metric)
  if isinstance(v, str):
    return v
  text = v.markdown()
  if kind in EXTENSIONS:
    text = f"*{EXTENSIONS[kind][0].upper()}{EXTENSIONS[kind][1:]}.* " + text
  if "all" in rows and v.expected in rows:
    d = stats.paired(rows[v.expected], rows["all"])
    text += (f". Against tuning everything: {v.expected} − all = "
             f"{stats.format_estimate(d, signed=True)} (two-sided p={d.p_value:.2g}).")
  return text


def lpft_verdict(results, spec) -> str:
  """Kumar et al.'s claims under `jaxtl.stats.verdict`: out of distribution LP-FT beats
  fine-tuning and the probe, on USPS (a natural shift) and on the mean of the MNIST-C
  corruptions apiece (alpha / 2 each: two claims); in distribution it matches or beats
  fine-tuning. Each OOD claim is tested only where its premise holds (the probe not
  significantly below fine-tuning out of distribution: features good for the shifted
  data); otherwise it says so, with what was measured."""
  strategies = results[spec]["strategies"]
  ood = ood_sets(results, spec)
  groups_ = {"USPS": [s for s in ood if s == "usps"],
             "MNIST-C mean": [s for s in ood if s != "usps"]}
  candidates = [k for k in ("all", "lp", "lp_ft") if k in strategies]
  if "lp_ft" not in candidates or len(candidates) < 2:
    return "**no verdict**: LP-FT's claims need the rows all, lp and lp_ft."
  lines, c = [], chance(results, [spec])
  floor, edges = results[spec]["source_test_accuracy"], _edges(results, [spec])
  for name, sets in groups_.items():
    if not sets:
      continue
    rows = {k: np.mean([runs(results, [spec], k, f"{s}_accuracy") for s in sets], 0)
            for k in candidates}
    v = stats.verdict(rows, "lp_ft", candidates, c, floor=floor, alpha=0.025, on_edge=edges)
    premise = stats.paired(rows["lp"], rows["all"]) if "lp" in rows and "all" in rows else None
    if premise is not None and stats.one_sided_p(stats.paired(rows["all"], rows["lp"])) <= 0.025:
      # Kumar et al. predict LP-FT's gain where the features are good for the shifted data,
      # i.e. where the probe holds up out of distribution; here it does not.
      lines.append(f"- OOD, {name}: **no test of the claim** (premise not met: the probe is "
                   f"significantly below fine-tuning out of distribution, lp − all = "
                   f"{stats.format_estimate(premise, signed=True)}, so the features are not "
                   f"good for these data in the paper's sense); as measured: {v.text}")
      continue
    lines.append(f"- OOD, {name}: {v.markdown()}")
    if premise is not None:
      lines.append(f"  (premise: lp − all = {stats.format_estimate(premise, signed=True)})")
  test = {k: runs(results, [spec], k) for k in candidates if k in ("all", "lp_ft")}
  if len(test) == 2:
    v = stats.verdict(test, "lp_ft", list(test), c, floor=floor, on_edge=edges)
    lines.append(f"- ID (test): {v.markdown()}")
  return "\n".join(lines)


def ood_sets(results, spec) -> list:
  first = next(iter(results[spec]["strategies"].values()))
  return [k[:-len("_accuracy")] for k in first["per_seed"][0] if k.endswith("_accuracy")
          and k not in ("val_accuracy", "test_accuracy", "test_worst_group_accuracy")]


def lpft_table(results, spec) -> str:
  """Accuracy on the target test set (ID) and on every other evaluation set (OOD), with
  their mean: one row per set, one column per strategy, the best of each row in bold."""
  strategies = results[spec]["strategies"]
  ood = ood_sets(results, spec)
  per_run = {label: {s: runs(results, [spec], label, f"{s}_accuracy") for s in ["test"] + ood}
             for label in strategies}
  rows = [("ID (test)", {k: v["test"] for k, v in per_run.items()})]
  rows += [(s, {k: v[s] for k, v in per_run.items()}) for s in ood]
  corruptions = [s for s in ood if s != "usps"]
  if len(corruptions) > 1 and len(corruptions) < len(ood):  # the verdict's MNIST-C mean too
    rows.append(("**MNIST-C mean**",
                 {k: np.mean([v[s] for s in corruptions], 0) for k, v in per_run.items()}))
  if len(ood) > 1:
    title = "**OOD mean (MNIST-C + USPS)**" if "usps" in ood else "**OOD mean**"
    rows.append((title, {k: np.mean([v[s] for s in ood], 0) for k, v in per_run.items()}))
  lines = ["| evaluation set | " + " | ".join(strategies) + " |",
           "|---|" + "---:|" * len(strategies)]
  for title, values in rows:
    top = tied_best(values)
    lines.append(f"| {title} | " + " | ".join(
        _cell(*_mean_ci(v), k in top) for k, v in values.items()) + " |")
  return "\n".join(lines)


def _mean_ci(values):
  e = stats.estimate(values)
  return e.mean, e.ci95


def picks(results, specs) -> str:
  """Each row's picks on validation (per pre-training: how many picked each value) and,
  in brackets, the range of values the pre-trainings tried: the config's starting grid
  widened past any edge pick, so a pick on the starting grid's edge is inside it."""
  out, bracketed = [], False
  for label, row in results[specs[0]]["strategies"].items():
    records = [q for s in specs for q in results[s]["strategies"][label].get("picks", [])]
    chosen = [q.get("learning_rate", q.get("l2")) for q in records]
    if chosen:
      what = "L2" if "l2" in row and "learning_rate" not in row else "lr"
      counts = {v: chosen.count(v) for v in sorted(set(chosen))}
      tried = sorted({float(v) for q in records for v in q.get("val_accuracy", {})})
      bracketed |= bool(tried)
      out.append(f"{label} {what} " + "/".join(
          f"{v:g}" + (f" (x{n})" if len(counts) > 1 else "") for v, n in counts.items())
          + (f" [{tried[0]:g}..{tried[-1]:g}]" if tried else ""))
  if not out:
    return ""
  return ("Picked on validation" + (" [range tried]" if bracketed else "") + ": "
          + ", ".join(out) + ".")


def format_tables(results) -> str:
  parts = []
  for name, specs in groups(results).items():
    columns = [(s.split(":", 2)[-1] if len(specs) > 1 else name, [s]) for s in specs]
    if len(specs) > 1:
      columns = [("mean", specs)] + columns
    first = results[specs[0]]["strategies"]
    shape = runs(results, specs, next(iter(first))).shape
    over = (f"{shape[0]} pre-trainings x {shape[1]} fine-tuning runs (t-interval over the "
            "pre-trainings' means)")
    table = (shift_table(results, columns) if len(columns) > MAX_COLUMNS else
             strategy_table(results, columns, new_head=name.startswith("lpft")))
    parts.append("\n\n".join(p for p in (
        f"### {name}", f"target test accuracy (%), mean ± 95% CI over {over}; in bold the "
        "best mean and every row not significantly below it (one-sided paired t-test, 5%, "
        "uncorrected; the verdict corrects for its comparisons)",
        table,
        picks(results, specs), verdict(results, specs), without_warps(results, specs),
        per_shift(results, specs)) if p))
    if "test_worst_group_accuracy" in next(iter(first.values()))["per_seed"][0]:
      parts.append("Worst-group test accuracy (%; groups: label x patch at the label's "
                   "position or not):\n\n" + strategy_table(results, columns,
                                                             "test_worst_group_accuracy"))
      parts.append("On worst-group accuracy, the paper's metric for spurious correlations "
                   "(learning rates picked on average validation accuracy): "
                   + verdict(results, specs, "test_worst_group_accuracy"))
    if any(k not in ("test_accuracy", "val_accuracy", "test_worst_group_accuracy")
           for k in next(iter(first.values()))["per_seed"][0] if k.endswith("_accuracy")):
      parts.append(f"In and out of distribution ({specs[0]}):\n\n" + lpft_table(results, specs[0])
                   + "\n\nKumar et al.'s claims:\n\n" + lpft_verdict(results, specs[0]))
  return "\n\n".join(parts)


def plot(results, path: str):
  """Per shift group: accuracy per strategy, and per block the relative gradient norm at
  the start and the weight movement under `all` (needs matplotlib)."""
  plt = pyplot()
  if plt is None:
    return None
  gs = groups(results)
  fig, axes = plt.subplots(2, len(gs), figsize=(4.2 * len(gs), 6.4), squeeze=False)
  for col, (name, specs) in enumerate(gs.items()):
    stats = averaged(results, specs)
    labels = list(stats)
    ax = axes[0, col]
    ax.bar(range(len(labels)), [100 * stats[k][0] for k in labels],
           yerr=[100 * stats[k][1] for k in labels], capsize=3,
           color=["tab:blue" if k.startswith(("block", "head")) else "tab:gray" for k in labels])
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    lo = min(100 * stats[k][0] for k in labels)
    ax.set_ylim(max(0, lo - 10), 100)
    ax.set_title(f"{name} ({len(specs)} shift{'s' if len(specs) > 1 else ''})")
    ax.set_ylabel("target test accuracy (%)")
    ax = axes[1, col]
    blocks = list(results[specs[0]]["relative_gradient_norm"])
    rgn = np.mean([[results[s]["relative_gradient_norm"][b] for b in blocks] for s in specs], 0)
    ax.plot(blocks, rgn / rgn.max(), "o-", label="RGN at start / max")
    moves = [results[s]["strategies"].get("all", {}).get("weight_movement") for s in specs]
    if all(moves):
      mv = np.mean([[m[b] for b in blocks] for m in moves], 0)
      ax.plot(blocks, mv / mv.max(), "s--", label="weight movement (all) / max")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.tick_params(axis="x", labelsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
