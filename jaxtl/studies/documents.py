"""The documents' generated blocks and the report of a results folder.

`TABLES` names every generated table of the documents (`DOCUMENTS`: README.md,
BUILD_NOTES.md and docs/): each is a function of the results folder that reads committed
JSON, so no number there is typed by hand. A document holds a table between
`<!-- NAME -->` and `<!-- /NAME -->`; `rewrite_blocks` refreshes them all
(`python -m experiments.report --workdir=results --out=results --documents`) and
`tests/test_results.py` checks that they match.

`write_report(root, out)` writes `out/report.md` for any folder of runs: one table per
kind of run (meta-learning with the papers' numbers, each study's own table), and plots.
"""
import os
import re

from jaxtl.finetune import compare
from jaxtl.report import (find_runs, kind_of, learning_curves, load, other_table,
                          plot_by_steps, plot_learning_curves, surgical_table)
from jaxtl.studies import lecture, shots
from jaxtl.studies.benchmark_tables import (bn_fold_table, conv_cost_table, finetune_cost_table,
                                            finetune_grid_table, lecture_seeds_table,
                                            memory_summary, memory_table,
                                            meta_step_cost_table, objectives_throughput_table,
                                            roofline_table, step_table, step_throughput_table,
                                            surgical_wall_table, throughput_ratio_table,
                                            throughput_table)
from jaxtl.studies.lake_tables import lake_table, protocols_table
from jaxtl.studies.meta_tables import meta_table, omniglot_gaps, omniglot_grid
from jaxtl.studies.pretraining import answers, floors, tables as pretraining
from jaxtl.studies.surgical import digits, report as surgical_report

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def documents(repo: str = REPO) -> list[str]:
  """The documents with generated blocks, relative to the repository: README.md,
  BUILD_NOTES.md and every page of docs/."""
  docs = os.path.join(repo, "docs")
  pages = sorted(f"docs/{n}" for n in os.listdir(docs) if n.endswith(".md")) \
      if os.path.isdir(docs) else []
  return ["README.md", "BUILD_NOTES.md"] + pages


def block_pattern(name: str):
  """`<!-- NAME -->` ... `<!-- /NAME -->`, markers on lines of their own, possibly
  indented alike (a table inside a list item)."""
  return re.compile(rf"^([ \t]*)<!-- {re.escape(name)} -->\n.*?\n\1<!-- /{re.escape(name)} -->",
                    re.S | re.M)


def lecture_table(root: str) -> str:
  """The sinusoid lecture's table, as `experiments.lecture` prints it."""
  r = load(root, "lecture/results.json")
  steps = [str(s) for s in r["config"]["maml"]["eval_steps"] if s > 0]
  return lecture.format_table(r["metrics"], steps)


def compare_table(path: str):
  """The fine-tuning comparison's table (`experiments.compare_finetune`) in `path`."""
  def table(root: str) -> str:
    return compare.format_table(load(root, path)["metrics"])
  return table


def surgical_sweep_table(path: str):
  """The surgical sweep's table (`experiments.surgical` / `experiments.multitask`)."""
  def table(root: str) -> str:
    return digits.format_table(load(root, path)["metrics"])
  return table


def surgical_sweep_verdict(path: str):
  """The surgical sweep's verdict per shift (`surgical.digits.verdict`)."""
  def table(root: str) -> str:
    return digits.verdict(load(root, path)["metrics"])
  return table


def surgical_study_tables(variant: str):
  """A surgical study's tables and verdicts (`experiments.surgical`), from
  `surgical/VARIANT/results.json`."""
  def table(root: str) -> str:
    return surgical_report.format_tables(
        load(root, f"surgical/{variant}/results.json")["metrics"])
  return table


def surgical_leave_one_out(variant: str):
  """How far a study's verdict on the mean of its shifts rests on any one of them: the
  same rule on the mean without each shift in turn (a sensitivity check, not a verdict)."""
  def table(root: str) -> str:
    results = load(root, f"surgical/{variant}/results.json")["metrics"]
    lines = []
    for name, specs in surgical_report.groups(results).items():
      if len(specs) < 3 or name.split(":")[0] not in surgical_report.EXPECTED:
        continue
      labels = {}  # verdict -> the shifts whose leaving out gives it
      for left_out in specs:
        v = surgical_report.judge(results, [s for s in specs if s != left_out])[0]
        labels.setdefault(getattr(v, "label", "no verdict"), []).append(
            left_out.split(":", 2)[-1])
      parts = [f"*{label}* without {', '.join(names)}" if len(names) < len(specs)
               else f"*{label}* whichever is left out"
               for label, names in sorted(labels.items(), key=lambda kv: len(kv[1]))]
      lines.append(f"{name}, the verdict on the mean of {len(specs) - 1} shifts, each left "
                   "out in turn (a sensitivity check, not the verdict): "
                   + "; ".join(parts) + ".")
    return "\n\n".join(lines)
  return table


def surgical_curve_table(root: str) -> str:
  """Validation and test accuracy against fine-tuning steps (`benchmarks.surgical_curve`)."""
  r = load(root, "surgical/natural/curve.json")
  lines = [f"`{r['row']}` on `{r['shift']}` at each pre-training's pick (most often lr "
           f"{r['learning_rate']:g}); mean ± 95% CI over pre-trainings:", "",
           "| steps | validation (%) | test (%) |", "|---:|---:|---:|"]
  for n, c in sorted(r["steps"].items(), key=lambda kv: int(kv[0])):
    lines.append(f"| {int(n):,} | {100 * c['val_mean']:.2f} ± {100 * c['val_ci95']:.2f} | "
                 f"{100 * c['test_mean']:.2f} ± {100 * c['test_ci95']:.2f} |")
  return "\n".join(lines)


def shots_tables(root: str, folder: str = "shots") -> str:
  """Accuracy against shots, transfer against meta-learning (`experiments.shots`)."""
  return shots.format_table(load(root, f"{folder}/results.json")["metrics"])


def shots_verdict(root: str) -> str:
  """Where transfer catches up with meta-learning, a sentence per way."""
  return shots.verdict(load(root, "shots/results.json")["metrics"])


def pretraining_tables(variant: str, answer_on: str = ""):
  """Transfer accuracy per pre-training objective and diversity (`experiments.pretraining`),
  then the question it answers, in a sentence with its numbers; `answer_on`: a transfer
  strategy whose settings alone the answer reads (the table shows every setting)."""
  def table(root: str) -> str:
    results = load(root, f"pretraining_{variant}/results.json")
    # From the cells: per-seed values for the answers' paired intervals.
    summary = pretraining.summarize(results["metrics"]["cells"], per_task=True)
    # The second floor, run apart for a study and its fine-tuned ends (`floors`).
    floor_path = f"pretraining_{re.sub(r'_(lpft|finetune)$', '', variant)}_floor/results.json"
    floor = load(root, floor_path) if os.path.exists(os.path.join(root, floor_path)) else None
    if floor:
      summary = floors.merge(summary, pretraining.summarize(floor["metrics"]["cells"],
                                                            per_task=True))
    dataset = results["config"].get("dataset", "omniglot")
    read = {o: {g: {s: c for s, c in cells.items()
                    if not answer_on or pretraining.setting_strategy(s) == answer_on}
                for g, cells in by_groups.items()} for o, by_groups in summary.items()}
    text = answers.answer(read, dataset, tuned="tuning" in results["metrics"])
    if answer_on:
      text = (f"The answer reads the {pretraining.STRATEGY_NAMES[answer_on]} settings alone "
              "(the network fine-tuned, as El-Nouby et al. transfer; the frozen features' "
              f"are the diversity study's). {text}")
    config = results["config"]
    if "tuning" in results["metrics"] and "tune" in config:
      gained = answers.budget(results["metrics"]["tuning"], config["tune"]["steps"],
                              config["pretrain"]["num_steps"])
      text = " ".join(t for t in (text, gained) if t)
    if floor:
      made_by = f"commit {floor.get('stamp', {}).get('commit', '')[:8]}, {floor_path}"
      text = " ".join(t for t in (text, floors.sentence(read, answer_on, made_by)) if t)
    # The untrained network's proxy: the study's, or its floor's (same tuning images).
    untrained = results["metrics"].get("untrained_proxy", (floor or {}).get(
        "metrics", {}).get("untrained_proxy"))
    picks = ("\n\n" + pretraining.format_picks(results["metrics"]["tuning"], list(summary),
                                                untrained)
             if results["metrics"].get("tuning") else "")
    return (_made_by(results) + "\n\n" + pretraining.format_table(summary, dataset) + picks
            + (f"\n\n{text}" if text else ""))
  return table


def _made_by(results: dict) -> str:
  """Which code made a pre-training study: its stamp's commit, or, with no stamp, the
  objectives from before issue 30 (the tables of those runs stay until their reruns land)."""
  stamp = results.get("stamp")
  if stamp and stamp.get("commit"):
    dirty = " with uncommitted changes" if stamp.get("dirty") else ""
    return (f"Made at commit {stamp['commit'][:8]}{dirty} (results.json's stamp), with the "
            "objectives as issue 30 specifies them and each one's settings picked on the "
            "source.")
  return ("Made before issue 30 (results.json has no code stamp), with the earlier "
          "objectives: its `mae` is what is now `masked_denoise` (no mask token, a linear "
          "decoder from pooled features), its `simclr` projected with one linear layer on "
          "milder views, no setting was tuned and there is no ceiling row.")


TABLES = {  # <!-- NAME --> block of README.md, BUILD_NOTES.md, docs/*.md -> its table
    "omniglot-table": lambda root: omniglot_grid(find_runs(root)),
    "omniglot-gaps": omniglot_gaps,
    "omniglot-lake-table": lake_table,
    "omniglot-protocols-table": protocols_table,  # the README's two protocols
    "lecture-table": lecture_table,
    "lecture-seeds-table": lecture_seeds_table,
    "compare-digits-table": compare_table("compare_digits/results.json"),
    "surgical-digits-table": surgical_sweep_table("surgical_digits/multitask.json"),
    "surgical-digits-verdict": surgical_sweep_verdict("surgical_digits/multitask.json"),
    "surgical-natural-table": surgical_study_tables("natural"),
    "surgical-output-table": surgical_study_tables("output"),
    "surgical-feature-table": surgical_study_tables("feature"),
    "surgical-lpft-table": surgical_study_tables("lpft"),
    "surgical-mnist-c-table": surgical_study_tables("mnist_c"),
    "surgical-mnist-c-leave-one-out": surgical_leave_one_out("mnist_c"),
    "surgical-digits-study-table": surgical_study_tables("digits"),
    "surgical-curve-table": surgical_curve_table,
    "finetune-grid-table": finetune_grid_table,
    "surgical-wall-table": surgical_wall_table,
    "bn-fold-table": bn_fold_table,
    "shots-table": shots_tables,
    "shots-verdict": shots_verdict,
    "shots-lake-table": lambda root: shots_tables(root, "shots_lake"),  # Lake's protocol
    "pretraining-labels-table": pretraining_tables("labels"),
    "pretraining-diversity-table": pretraining_tables("diversity"),
    **{f"pretraining-{d.replace('_', '-')}-{kind}-table": pretraining_tables(f"{d}_{kind}")
       for d in ("mnist", "fashion_mnist") for kind in ("labels", "diversity")},
    # A diversity study's ends with the network fine-tuned (El-Nouby et al.'s transfer).
    "pretraining-diversity-finetune-table": pretraining_tables("diversity_finetune",
                                                               answer_on="finetune"),
    **{f"pretraining-{d.replace('_', '-')}-diversity-lpft-table": pretraining_tables(
        f"{d}_diversity_lpft", answer_on="lp_ft") for d in ("mnist", "fashion_mnist")},
    "throughput-table": throughput_table,
    "throughput-ratio-table": throughput_ratio_table,
    "step-throughput-table": step_throughput_table,
    "torchvision-step-table": step_table("benchmarks/torchvision_resnet_cpu.json"),
    "conv-cost-table": conv_cost_table,
    "roofline-table": roofline_table,
    "finetune-cost-table": finetune_cost_table,
    "meta-step-cost-table": meta_step_cost_table,
    "memory-table": memory_table,
    "memory-summary": memory_summary,
    "objectives-throughput-table": objectives_throughput_table,
}


def document_tables(root: str) -> dict[str, str]:
  """NAME -> table for each of `TABLES` whose JSON file is under root."""
  tables = {}
  for name, table in TABLES.items():
    try:
      tables[name] = table(root)
    except FileNotFoundError:
      continue
  return tables


def write_report(root: str, out: str = "") -> str:
  """Writes `out/report.md` (default out = root) and its plots; returns the report's path."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f"No folder {root!r} to report on.")
  runs = find_runs(root)
  if not runs:
    raise FileNotFoundError(f"No results.json under {root!r}: run an experiment first.")
  out = out or root
  os.makedirs(out, exist_ok=True)
  maintainers = os.path.realpath(root) == os.path.realpath(os.path.join(REPO, "results"))
  by_kind = {}
  for name, r in runs:
    by_kind.setdefault(kind_of(r), []).append((name, r))
  sections = [f"# Results under `{root}`\n"]
  meta = [(n, r) for n, r in by_kind.get("meta", []) if "test_accuracy_by_steps" in r["metrics"]
          or "test_mse_by_steps" in r["metrics"]]
  if meta:
    grid = omniglot_grid(meta) if maintainers else ""  # the papers' layout, for the repo
    if grid:
      sections.append("## Omniglot, MAML Table 1's layout (test accuracy, %, +- 95% CI)\n\n"
                      + grid)
    sections.append("## Meta-learning runs (mean over test tasks +- 95% CI)\n\n"
                    + meta_table(meta))
    for metric in ("accuracy", "mse"):
      group = [(n, r) for n, r in meta if f"test_{metric}_by_steps" in r["metrics"]]
      png = f"meta_{metric}_by_steps.png"
      if group and plot_by_steps(group, metric, os.path.join(out, png)):
        sections.append(f"![test {metric} against inner steps]({png})")
  for kind, title in [("lecture", "Sinusoid lecture"), ("compare", "Fine-tuning strategies"),
                      ("surgical_study", "Surgical fine-tuning study"),
                      ("shots", "Transfer against meta-learning by shots"),
                      ("pretraining", "Pre-training study")]:
    for name, _ in by_kind.get(kind, []):  # these runs write their own table
      table = os.path.join(root, name, "results.md")
      if os.path.exists(table):
        with open(table) as f:
          sections.append(f"## {title}: {name}\n\n" + f.read().strip())
        if os.path.exists(os.path.join(root, name, "results.png")):
          sections.append(f"![{title}]({os.path.relpath(os.path.join(root, name), out)}/results.png)")
  for name, r in by_kind.get("surgical", []):
    png = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") + "_surgical.png"
    sections.append(f"## Surgical fine-tuning: {name}\n\n" + surgical_table(name, r))
    if digits.plot(r["metrics"], os.path.join(out, png)):
      sections.append(f"![surgical fine-tuning]({png})")
  other = [run for kind in ("finetune", "other") for run in by_kind.get(kind, [])]
  if other:
    sections.append("## Other runs\n\n" + other_table(other))
  for kind, curves in learning_curves(root).items():
    png = "learning_curves.png" if kind == "finetune" else f"learning_curves_{kind}.png"
    if plot_learning_curves(curves, os.path.join(out, png)):
      title = "meta-learning" if kind == "meta" else "training and fine-tuning"
      sections.append(f"## Learning curves, {title}\n\n![learning curves]({png})")
  blocks = [f"<!-- {name} -->\n{table}\n<!-- /{name} -->"
            for name, table in document_tables(root).items() if table] if maintainers else []
  if blocks:  # the repository's own results: the blocks of its documents
    sections.append("## Blocks of the documents\n\nEach block, markers included, "
                    "replaces the block of the same name in README.md, BUILD_NOTES.md or docs/ "
                    "(`tests/test_results.py` checks that they match).\n\n"
                    + "\n\n".join(blocks))
  path = os.path.join(out, "report.md")
  with open(path, "w") as f:
    f.write("\n\n".join(sections) + "\n")
  return path


def rewrite_blocks(root: str, repo: str = REPO) -> list[str]:
  """Replaces every generated block of every document by its table from the results
  under `root` (indented like its markers); returns the documents that changed."""
  tables = document_tables(root)
  changed = []
  for document in documents(repo):
    path = os.path.join(repo, document)
    with open(path) as f:
      text = f.read()
    new = text
    for name, table in tables.items():
      def fill(match, table=table, name=name):
        indent = match.group(1)
        body = "\n".join(indent + line if line else line for line in table.split("\n"))
        return f"{indent}<!-- {name} -->\n{body}\n{indent}<!-- /{name} -->"
      new = block_pattern(name).sub(fill, new)
    if new != text:
      with open(path, "w") as f:
        f.write(new)
      changed.append(document)
  return changed
