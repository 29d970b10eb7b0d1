"""Tables, verdicts and the plot of a surgical fine-tuning study (`surgical.study`).

Shifts of one kind and dataset (the corruptions of `input:mnist:*`) are also averaged:
per seed over the shifts, then mean and 95% t-interval over seeds. The verdict compares
the paper's claim with the numbers: the block the paper expects for the shift kind, the
best single block found, and the best strategy against fine-tuning everything, paired by
seed (significant when the interval of the difference excludes 0).
"""
import numpy as np
from scipy import stats as scipy_stats

from jaxtl.metrics import pyplot

# Lee et al. 2023: input-level -> first block; feature-level -> middle; output-level -> last.
EXPECTED = {"input": "first", "natural": "first", "feature": "middle", "output": "head",
            "spurious": "head"}


MAX_COLUMNS = 4  # shifts beyond which a table lists them as rows


def ci95(values) -> float:
  """Half-width of the 95% t-interval of the mean (nan for fewer than 2 values)."""
  values = np.asarray(values, np.float64)
  if len(values) < 2:
    return float("nan")
  return float(scipy_stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1)
               / np.sqrt(len(values)))


def groups(results) -> dict:
  """{"kind:dataset": [spec, ...]} in order of appearance."""
  out = {}
  for spec in results:
    kind, dataset = spec.split(":")[:2]
    out.setdefault(f"{kind}:{dataset}", []).append(spec)
  return out


def averaged(results, specs, metric="test_accuracy") -> dict:
  """strategy -> (mean, ci95, per-seed values) of `metric` averaged over `specs`."""
  labels = list(results[specs[0]]["strategies"])
  out = {}
  for label in labels:
    per_seed = np.mean([[r[metric] for r in results[s]["strategies"][label]["per_seed"]]
                        for s in specs], axis=0)
    out[label] = (float(per_seed.mean()), ci95(per_seed), per_seed)
  return out


def _cell(mean, ci, bold=False):
  text = f"{100 * mean:.1f} ± {100 * ci:.1f}"
  return f"**{text}**" if bold else text


def strategy_table(results, columns, metric="test_accuracy") -> str:
  """Rows: strategies; columns: (title, specs) with specs averaged."""
  stats = [(title, averaged(results, specs, metric)) for title, specs in columns]
  labels = list(stats[0][1])
  first = results[columns[0][1][0]]["strategies"]
  rows = ["| strategy | changes (params / BN stats) | " + " | ".join(t for t, _ in stats) + " |",
          "|---|---:|" + "---:|" * len(stats)]
  for label in labels:
    cells = []
    for _, s in stats:
      best = max(s, key=lambda k: s[k][0])
      cells.append(_cell(s[label][0], s[label][1], label == best))
    changes = f"{first[label]['changed_params']:,} / {first[label]['changed_stats']:,}"
    rows.append(f"| {label} | {changes} | " + " | ".join(cells) + " |")
  if metric == "test_accuracy" and all("no_finetuning_test_accuracy" in results[s]
                                       for _, specs in columns for s in specs):
    cells = [f"{100 * np.mean([results[s]['no_finetuning_test_accuracy'] for s in specs]):.1f}"
             for _, specs in columns]
    rows.append("| (no fine-tuning) | 0 / 0 | " + " | ".join(cells) + " |")
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
    best = max(s, key=lambda k: s[k][0])
    cells = [_cell(s[k][0], s[k][1], k == best) for k in labels]
    if zero_shot:
      before = [results[x]["no_finetuning_test_accuracy"] for x in specs]
      cells.append(f"{100 * np.mean(before):.1f}")
    rows.append(f"| {title} | " + " | ".join(cells) + " |")
  first = results[columns[0][1][0]]["strategies"]
  rows.append("\nWhat each strategy changes (params / BN stats): " + ", ".join(
      f"{k} {first[k]['changed_params']:,} / {first[k]['changed_stats']:,}" for k in labels) + ".")
  return "\n".join(rows)


def block_label(results, spec, alias):
  """The strategy label that tunes the block the alias names (`first` -> `block1`)."""
  from jaxtl.finetune.strategies import resolve_blocks  # pylint: disable=import-outside-toplevel
  rgn = results[spec]["relative_gradient_norm"]
  return resolve_blocks([alias], list(rgn))[0]


def _paired(stats, a, b):
  """Mean and 95% CI of a - b, seed by seed, and whether the interval excludes 0."""
  diff = stats[a][2] - stats[b][2]
  mean, ci = float(diff.mean()), ci95(diff)
  return mean, ci, abs(mean) > ci


def verdict(results, specs, baseline="all") -> str:
  """reproduced: the paper's block is the best single block; not reproduced: another block
  beats it, significantly (paired over seeds); inconclusive: another block is ahead
  within the noise."""
  kind = specs[0].split(":")[0]
  if kind not in EXPECTED:
    return ""
  stats = averaged(results, specs)
  blocks = [b for b in results[specs[0]]["relative_gradient_norm"] if b in stats]
  best = max(blocks, key=lambda b: stats[b][0])
  expected = block_label(results, specs[0], EXPECTED[kind])
  text = f"paper: {expected}; best single block here: {best} ({100 * stats[best][0]:.1f})"
  label = "reproduced"
  if expected in stats and best != expected:
    mean, ci, sig = _paired(stats, best, expected)
    label = "not reproduced" if sig else "inconclusive"
    text += f"; {best} − {expected} = {100 * mean:+.1f} ± {100 * ci:.1f}"
  if baseline in stats:
    mean, ci, sig = _paired(stats, best, baseline)
    text += (f"; {best} − {baseline} = {100 * mean:+.1f} ± {100 * ci:.1f} "
             f"({'significant' if sig else 'not significant'})")
  return f"**{label}**: {text}"


def lpft_table(results, spec) -> str:
  """Accuracy on the target test set (ID) and on every other evaluation set (OOD), with
  their mean: one row per set, one column per strategy, the best of each row in bold."""
  strategies = results[spec]["strategies"]
  first = next(iter(strategies.values()))
  sets = [k[:-len("_accuracy")] for k in first["per_seed"][0] if k.endswith("_accuracy")
          and k not in ("val_accuracy", "test_worst_group_accuracy")]
  ood = [s for s in sets if s != "test"]
  per_seed = {label: {s: np.array([p[f"{s}_accuracy"] for p in r["per_seed"]]) for s in sets}
              for label, r in strategies.items()}
  rows = [("ID (test)", {k: v["test"] for k, v in per_seed.items()})]
  rows += [(s, {k: v[s] for k, v in per_seed.items()}) for s in ood]
  if len(ood) > 1:
    rows.append(("**OOD mean**", {k: np.mean([v[s] for s in ood], 0) for k, v in per_seed.items()}))
  lines = ["| evaluation set | " + " | ".join(strategies) + " |",
           "|---|" + "---:|" * len(strategies)]
  for title, values in rows:
    best = max(values, key=lambda k: values[k].mean())
    lines.append(f"| {title} | " + " | ".join(
        _cell(v.mean(), ci95(v), k == best) for k, v in values.items()) + " |")
  return "\n".join(lines)


def format_tables(results) -> str:
  parts = []
  for name, specs in groups(results).items():
    columns = [(s.split(":", 2)[-1] if len(specs) > 1 else name, [s]) for s in specs]
    if len(specs) > 1:
      columns = [("mean", specs)] + columns
    first = results[specs[0]]["strategies"]
    seeds = len(next(iter(first.values()))["per_seed"])
    table = (shift_table if len(columns) > MAX_COLUMNS else strategy_table)(results, columns)
    parts.append(f"### {name}\n\ntarget test accuracy (%), mean ± 95% CI over {seeds} seeds"
                 f"\n\n{table}\n\n{verdict(results, specs)}")
    if "test_worst_group_accuracy" in next(iter(first.values()))["per_seed"][0]:
      parts.append("Worst-group test accuracy (%; groups: label x patch at the label's "
                   "position or not):\n\n" + strategy_table(results, columns,
                                                             "test_worst_group_accuracy"))
    if any(k not in ("test_accuracy", "val_accuracy", "test_worst_group_accuracy")
           for k in next(iter(first.values()))["per_seed"][0] if k.endswith("_accuracy")):
      parts.append(f"In and out of distribution ({specs[0]}):\n\n" + lpft_table(results, specs[0]))
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
