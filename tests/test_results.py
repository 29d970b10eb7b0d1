"""The committed results: every results table of README.md, BUILD_NOTES.md and docs/ is
the report's, committed results name no machine's paths, and a committed checkpoint
re-evaluates to its committed number."""
import json
import os
import re
import subprocess
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from benchmarks import timing
from experiments.configs import meta as meta_configs
from jaxtl import report, workdir as run_dir
from jaxtl.meta import train
from jaxtl.studies import benchmark_tables, documents, meta_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "results")


DOCUMENTS = tuple(documents.documents(ROOT))  # README.md, BUILD_NOTES.md, docs/*.md
CHECKED_ELSEWHERE = {"omniglot-runs",  # commands, not numbers: test_readme_commands_...
                     "own-model-example",  # code, run by test_own_model
                     "adapt-example"}  # code, run by test_adapt
# A block may be indented (a table inside a list item): its lines are compared dedented.
BLOCK = re.compile(r"^([ \t]*)<!-- ([a-z0-9-]+) -->\n(.*?)\n\1<!-- /\2 -->", re.S | re.M)


def _blocks(document: str) -> list[tuple[str, str]]:
  with open(os.path.join(ROOT, document)) as f:
    return [(name, textwrap.dedent(text)) for _, name, text in BLOCK.findall(f.read())]


# results/report.md is generated, but committed: its blocks drift like the documents'.
@pytest.mark.parametrize("document", DOCUMENTS + ("results/report.md",))
def test_every_block_is_the_reports_table(document):
  """No number in a marked block is typed by hand: after new results, paste the blocks
  printed at the end of `python -m experiments.report --workdir=results --out=results`
  (results/report.md)."""
  blocks = _blocks(document)
  assert blocks, f"{document} has no generated block"
  with open(os.path.join(ROOT, document)) as f:
    opened = re.findall(r"<!-- ([a-z0-9-]+) -->", f.read())
  assert sorted(opened) == sorted(name for name, _ in blocks), (
      f"{document}: a <!-- NAME --> marker without its <!-- /NAME --> on a line of its own")
  for name, text in blocks:
    if name in CHECKED_ELSEWHERE:
      continue
    assert name in documents.TABLES, f"{document}: <!-- {name} --> is not a documents.TABLES"
    assert text.strip() == documents.TABLES[name](RESULTS).strip(), (
        f"{document}: block {name} differs from the report's; regenerate it")


def test_committed_report_has_every_table():
  """`python -m experiments.report --workdir=results --out=results` was rerun after the
  last results: results/report.md has a block for each table of the committed JSON."""
  names = {name for name, _ in _blocks("results/report.md")}
  tables = {name for name, table in documents.document_tables(RESULTS).items() if table}
  assert names == tables, f"missing: {tables - names}; stale: {names - tables}"


def test_every_results_table_is_in_a_block():
  """A Markdown table row with a decimal number outside a marked block is a result typed
  by hand (tables of settings have no decimals)."""
  loose = []
  for document in DOCUMENTS:
    with open(os.path.join(ROOT, document)) as f:
      text = BLOCK.sub("", f.read())
    loose += [f"{document}: {line}" for line in text.splitlines()
              if line.lstrip().startswith("|") and re.search(r"\d\.\d", line)]
  assert not loose, "table rows with numbers outside generated blocks:\n" + "\n".join(loose)


def test_every_table_has_a_block():
  """Each of documents.TABLES whose JSON is committed appears in a document: a result that
  is measured is shown."""
  names = {name for document in DOCUMENTS for name, _ in _blocks(document)}
  tables = {name for name, table in documents.document_tables(RESULTS).items() if table}
  assert tables <= names, tables - names


def _committed_json_files() -> list[str]:
  """JSON files under results/ that git tracks (all of them when git is not there)."""
  try:
    out = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
  except (OSError, subprocess.CalledProcessError):
    out = [os.path.relpath(os.path.join(folder, f), ROOT)
           for folder, _, files in os.walk(RESULTS) for f in files]
  return sorted(f for f in out if f.endswith(".json"))


def _absolute_paths(value, key=""):
  """(key, value) of every string in a JSON value that starts with "/"."""
  if isinstance(value, dict):
    for k, v in value.items():
      yield from _absolute_paths(v, f"{key}.{k}" if key else k)
  elif isinstance(value, list):
    for i, v in enumerate(value):
      yield from _absolute_paths(v, f"{key}[{i}]")
  elif isinstance(value, str) and value.startswith("/"):
    yield key, value


def test_committed_results_name_no_absolute_paths():
  """A path of the machine that wrote a result means nothing in a clone (and says who
  ran it): committed JSON stores paths relative to the repository root."""
  files = _committed_json_files()
  assert files
  found = []
  for name in files:
    with open(os.path.join(ROOT, name)) as f:
      found += [f"{name}: {key} = {value!r}" for key, value in _absolute_paths(json.load(f))]
  assert not found, "absolute paths in committed results:\n" + "\n".join(found)


def _document_block(document: str, name: str) -> str:
  blocks = dict(_blocks(document))
  assert name in blocks, f"{document} lost its <!-- {name} --> block"
  return blocks[name]


def _slug(heading: str) -> str:
  """GitHub's anchor of a Markdown heading: lower case, punctuation but - and _ dropped,
  spaces to hyphens."""
  return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(document: str) -> set[str]:
  with open(os.path.join(ROOT, document)) as f:
    text = re.sub(r"^```.*?^```", "", f.read(), flags=re.S | re.M)  # no headings in code
  return {_slug(h) for h in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M)}


def test_readme_is_short_with_a_table_of_contents_that_resolves():
  """Issue 31: the README is a front page of at most about 250 lines; its contents and
  every relative link in it (file, and #anchor: a heading of that file) lead somewhere, so
  that every table of docs/ is one click away."""
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  assert len(text.splitlines()) <= 260
  assert re.search(r"^## Contents$", text, re.M), "README.md has no table of contents"
  links = re.findall(r"\]\(([^)\s]+)\)", text)
  relative = [link for link in links if not re.match(r"[a-z][a-z0-9+.-]*:", link)]
  assert len(relative) >= 20
  broken = []
  for link in relative:
    path, _, anchor = link.partition("#")
    document = os.path.normpath(path) if path else "README.md"
    if not os.path.exists(os.path.join(ROOT, document)):
      broken.append(f"{link}: no file {document}")
    elif anchor and (not document.endswith(".md") or anchor not in _anchors(document)):
      broken.append(f"{link}: no heading of {document} has the anchor #{anchor}")
  assert not broken, "README.md links that lead nowhere:\n" + "\n".join(broken)


def _config_from_flags(variant: str, overrides: list[str]):
  argv = ["meta_train", f"--config={ROOT}/experiments/configs/meta.py:{variant}", *overrides]
  values = flags.FlagValues()  # parsed as the launchers parse them
  config_flags.DEFINE_config_file("config", None, flag_values=values, sys_argv=argv)
  values(argv)
  return values.config


def test_no_pretraining_is_one_experiment_across_the_digits_studies():
  """The random network of a seed, learnt from the same labelled draw, is the floor of
  every digits study and every diversity made by the same code (docs/pretraining.md says
  the column reads the same): cells computed on another machine or by other code would
  differ here first. Studies of other code versions (their stamps' `code_hash`; none
  before issue 35's stamps) are compared only among themselves, while reruns land."""
  accuracies = {}
  for name in ("mnist_labels", "fashion_mnist_labels", "mnist_diversity",
               "fashion_mnist_diversity"):
    path = os.path.join(RESULTS, f"pretraining_{name}", "results.json")
    if not os.path.exists(path):
      continue
    with open(path) as f:
      result = json.load(f)
    code = result.get("stamp", {}).get("code_hash")
    for key, cell in result["metrics"]["cells"].items():
      objective, _, seed, setting = key.split("_", 3)
      if objective == "scratch":
        accuracies.setdefault((code, seed, setting), {})[name] = cell["accuracy"]
  shared = {k: v for k, v in accuracies.items() if len(v) > 1}
  assert shared
  differ = {k: v for k, v in shared.items() if len(set(v.values())) > 1}
  assert not differ, differ


def test_readme_commands_reproduce_each_omniglot_run():
  """Each row of the runs table of docs/meta_learning.md: variant + flags give the config
  the committed run was trained with (fields of how it executed aside), and a model
  `meta_eval` accepts; every Omniglot run under results/ has a row."""
  runs_table = _document_block("docs/meta_learning.md", "omniglot-runs")
  rows = [re.findall(r"`([^`]*)`", line) for line in runs_table.splitlines()
          if line.startswith("| `results/")]
  listed = set()
  for cells in rows:
    folder, variant, overrides = cells[0].rstrip("/"), cells[1], " ".join(cells[2:3])
    listed.add(folder)
    saved = run_dir.saved_config(os.path.join(ROOT, folder))
    config = _config_from_flags(variant, overrides.split())
    current = json.loads(config.to_json_best_effort())
    for key, default in run_dir.FIELD_DEFAULTS.items():  # fields configs gained or lost
      saved, current = {key: default, **saved}, {key: default, **current}
    for key, value in saved.items():
      if key in run_dir.EXECUTION_FIELDS:
        continue
      if isinstance(value, dict):  # runs older than a model option lack its key
        assert {k: current[key][k] for k in value} == value, (folder, key)
      else:
        assert current[key] == value, (folder, key, current[key], value)
    train.check_same_model(config, os.path.join(ROOT, folder))  # meta_eval accepts it
  runs = {os.path.join("results", name.split("/")[0]) for name, r in report.find_runs(RESULTS)
          if report.kind_of(r) == "meta" and r["config"].get("dataset") == "omniglot"
          and not r["config"].get("ensemble")}  # ensembles train nothing: their own commands
  assert runs <= listed, runs - listed


def test_committed_protonet_checkpoint_reevaluates_to_its_number(tmp_path, data_dir):
  run = os.path.join(RESULTS, "omniglot_5w1s_protonet")
  with open(os.path.join(run, "meta_eval", "results.json")) as f:
    committed = json.load(f)["metrics"]
  config = meta_configs.get_config("omniglot_5w1s")
  config.algorithm, config.model_kwargs.pool, config.data_dir = "protonet", "flatten", data_dir
  metrics = train.evaluate_checkpoint(config, run, str(tmp_path))
  # 3,000 query predictions: one whose two best logits are within float32 rounding may
  # flip on another CPU or thread count (seen: 1 of 60,000 for 20w5s), so allow 3 flips.
  assert metrics["test_accuracy"] == pytest.approx(committed["test_accuracy"], abs=3 / 3000)
  assert metrics["meta_iterations"] == committed["meta_iterations"] == 5000


def test_throughput_tables_from_a_benchmark_json(tmp_path):
  """The throughput blocks from a hand-made benchmark file: the
  fastest method per setting in bold, every jaxtl row in the full table and jaxtl's
  fastest over each peer, the machine."""
  rows = [{"setting": "5w1s", "method": method, "meta_iterations_per_second": rate, "way": 5,
           "shot": 1, "meta_batch": 32, "inner_steps": 1}
          for method, rate in [("jaxtl (vmap, conv=auto)", 4.0), ("jaxtl (map, conv=xla)", 1.0),
                               ("torch.func", 2.0), ("learn2learn method", 5.0)]]
  rows[2]["meta_iterations_per_second_range"] = [1.5, 2.5]  # interleaved rounds' range
  os.makedirs(tmp_path / "benchmarks")
  with open(tmp_path / "benchmarks" / "maml_throughput_cpu.json", "w") as f:
    json.dump({"machine": "CPU, 2 cores", "versions": {"jax": "0.10.2"}, "results": rows,
               "not_run": ["learn2learn: no module"]}, f)
  short = benchmark_tables.throughput_table(str(tmp_path))
  assert "| 5-way 1-shot, 32 tasks, 1 step | 4.00 | 2.00 | **5.00** |" in short
  assert short.startswith("Measured on: CPU, 2 cores; jax 0.10.2.")
  ratios = benchmark_tables.throughput_ratio_table(str(tmp_path))
  assert ("| 5-way 1-shot, 32 tasks, 1 step | 4.00 | 1.00 | 2.00 (1.50-2.50) | 5.00 | 2.00x | "
          "0.80x |" in ratios)
  assert ratios.endswith("Not run: learn2learn: no module.")
  assert set(documents.document_tables(str(tmp_path))) == {
      "omniglot-table", "omniglot-gaps", "omniglot-lake-table", "omniglot-protocols-table",
      "throughput-table", "throughput-ratio-table"}


def test_step_throughput_table_from_a_benchmark_json(tmp_path):
  """The fine-tuning / sinusoid block from a hand-made benchmark file: each method's
  median and range, jaxtl's fastest over each PyTorch method, the gradient check."""
  rows = [{"case": "sinusoid", "method": method, "per_second": rate,
           "per_second_range": [rate - 1, rate + 1]}
          for method, rate in [("jaxtl (500 per call)", 300.0), ("jaxtl (1 per call)", 200.0),
                               ("torch.func", 100.0)]]
  os.makedirs(tmp_path / "benchmarks")
  with open(tmp_path / "benchmarks" / "step_throughput_cpu.json", "w") as f:
    json.dump({"machine": "CPU, 2 cores", "batch_size": 128, "results": rows,
               "checks": {"sinusoid_meta_gradient_relative_error": 7.5e-7}}, f)
  table = benchmark_tables.step_throughput_table(str(tmp_path))
  assert ("| sinusoid MAML meta-iteration (25 tasks, 1 inner step) | torch.func | "
          "100.0 (99.0-101.0) | 3.00x |") in table
  assert "| jaxtl (1 per call) | 200.0 (199.0-201.0) |  |" in table
  assert table.endswith("Check: sinusoid meta gradient relative error 7.5e-07.")


def test_compiled_cost_counts_a_matrix_product_in_closed_form():
  """XLA's count of (m x k) @ (k x n) is 2mkn operations, and at least the operands and
  the result in bytes."""
  m, k, n = 64, 48, 32
  cost = timing.compiled_cost(jax.jit(jnp.matmul), jnp.ones((m, k)), jnp.ones((k, n)))
  assert cost["gflop"] == pytest.approx(2 * m * k * n / 1e9)
  assert cost["gbytes"] >= 4 * (m * k + k * n + m * n) / 1e9


def test_ratio_lines_take_jaxtls_fastest_row_per_group():
  rows = [{"setting": "a", "method": "jaxtl (vmap)", "rate": 4.0},
          {"setting": "a", "method": "jaxtl (map)", "rate": 2.0},
          {"setting": "a", "method": "torch.func", "rate": 2.5},
          {"setting": "b", "method": "jaxtl (vmap)", "rate": 1.0},
          {"setting": "b", "method": "learn2learn", "rate": 2.0}]
  assert timing.ratio_lines(rows, "setting", "rate") == [
      "a: jaxtl (vmap) / torch.func = 1.60x", "b: jaxtl (vmap) / learn2learn = 0.50x"]


def test_roofline_table_from_a_benchmark_json(tmp_path):
  """The roofline block from a hand-made run: the bounds are the step's work over the
  probes' rates measured in the same run."""
  os.makedirs(tmp_path / "benchmarks")
  probes = [{"case": "matrix product", "kind": "arithmetic probe", "gflop": 16.0,
             "gbytes": 0.0, "per_second": 10.0},
            {"case": "copy 1 MB", "kind": "memory probe", "gflop": 0.0, "gbytes": 0.002,
             "per_second": 10000.0}]
  step = {"case": "MAML 5w1s", "kind": "maml", "gflop": 8.0, "gbytes": 2.0, "per_second": 4.0}
  with open(tmp_path / "benchmarks" / "roofline_cpu.json", "w") as f:
    json.dump({"results": timing.roofline_bounds(probes + [step])}, f)
  table = benchmark_tables.roofline_table(str(tmp_path))
  assert ("| step | ms | GFLOP | GB moved | GFLOP/s | ms at matrix product's 160.0 GFLOP/s | "
          "ms at copy 1 MB's 20.0 GB/s |") in table
  # 250 ms a step; 8 GFLOP at 160 GFLOP/s is 50 ms; 2 GB at 20 GB/s is 100 ms.
  assert table.endswith("| MAML 5w1s | 250.0 | 8.00 | 2.00 | 32.0 | 50.0 | 100.0 |")


def test_surgical_wall_table_bounds_the_speed_up_by_the_rows_that_train_the_first_block(
    tmp_path):
  """The surgical-wall block from a hand-made run: rows that train block1 have no frozen
  prefix, so the study's speed-up is at most its uncached time over theirs."""
  os.makedirs(tmp_path / "benchmarks")
  def row(cached, every, blocks):
    arm = lambda s: {"seconds": s, "test_accuracy": 0.9, "picks": [1e-3],
                     "changed_blocks": blocks}
    return {"cached": arm(cached), "every_step": arm(every), "speedup": every / cached,
            "first": "cached", "cached_blocks": 0 if "block1" in blocks else 2}
  rows = {"block1": row(10.0, 10.0, ["block1", "head"]), "head": row(2.0, 8.0, ["head"]),
          "all": row(10.0, 12.0, ["block1", "block2", "head"])}
  with open(tmp_path / "benchmarks" / "surgical_wall_cpu.json", "w") as f:
    json.dump({"shift": "input:mnist:rotate", "pretrain_seeds": [0], "lr_grid": [1e-3],
               "blocks": ["block1", "block2", "head"], "rows": rows,
               "total": {"cached": 22.0, "every_step": 30.0, "speedup": 30 / 22},
               "same_picks": True, "max_test_accuracy_difference": 0.0}, f)
  table = benchmark_tables.surgical_wall_table(str(tmp_path))
  assert "| head | 2.0 | 8.0 | 4.00x | cached | 90.00 / 90.00 | 0.001 / 0.001 |" in table
  assert "| **total** | 22.0 | 30.0 | 1.36x |" in table
  # block1 and all take 20 s cached: 30 s without the cache over 20 s is at most 1.50x.
  assert ("The rows that cache nothing (block1, all: they train block1 or normalise with "
          "batch statistics) take 20 s of the cached study's 22 s, so with every other row free "
          "the study would be at most 1.50x faster") in table


def test_conv_cost_table_sums_one_step_of_convolutions(tmp_path):
  """The convolution block from a hand-made file: a row per shape, and the last row sums
  each method's times weighted by how often the shape occurs in the network."""
  rows = [{"input": 28, "in": 16, "out": 16, "kernel": 3, "stride": 1, "count": 2,
           "method": method, "pass": "forward", "ms": ms}
          for method, ms in [("jax xla", 5.0), ("PyTorch", 2.0)]]
  rows += [dict(r, input=7, count=1, ms=r["ms"] / 10) for r in rows]
  os.makedirs(tmp_path / "benchmarks")
  with open(tmp_path / "benchmarks" / "conv_cost_cpu.json", "w") as f:
    json.dump({"batch_size": 128, "results": rows}, f)
  table = benchmark_tables.conv_cost_table(str(tmp_path))
  assert "| 28x28x16 -> 16, 3x3 stride 1 | 2 | 5.00 | 2.00 |" in table
  assert table.endswith("| all, one step's worth | | **10.5** | **4.2** |")
  # With both jax kernels' forward + backward, each shape's faster one and what the
  # convolutions cost with it: xla 5 at 28 px (x2), im2col 0.2 at 7 px: 10.2.
  timed = [dict(r, method=m, ms=t, **{"pass": "forward + backward"})
           for r in rows[::2] for m, t in (("jax xla", r["ms"]), ("jax im2col", 2 * r["ms"]))]
  timed[3]["ms"] = 0.2  # im2col at 7 px beats xla's 0.5
  with open(tmp_path / "benchmarks" / "conv_cost_cpu.json", "w") as f:
    json.dump({"batch_size": 128, "results": timed}, f)
  table = benchmark_tables.conv_cost_table(str(tmp_path))
  assert "| 28x28x16 -> 16, 3x3 stride 1 | 2 | 5.00 | 10.00 | xla |" in table
  assert "| 7x7x16 -> 16, 3x3 stride 1 | 1 | 0.50 | 0.20 | im2col |" in table
  assert table.endswith("| **10.5** | **20.2** | **10.2** forward + backward |")


def test_memory_summary_from_a_benchmark_json(tmp_path):
  """Peak memory linear in the inner steps: the summary's growth is the exact slope."""
  rows = [{"setting": "20w1s", "meta_batch": 16, "inner_steps": k, "remat": remat,
           "peak_gib": 0.25 + k * (0.0625 if remat else 0.5)}
          for k in (1, 5, 9) for remat in (False, True)]
  os.makedirs(tmp_path / "benchmarks")
  with open(tmp_path / "benchmarks" / "maml_memory_cpu.json", "w") as f:
    json.dump({"device": "cpu", "results": rows}, f)
  assert benchmark_tables.memory_growth(rows) == pytest.approx({False: 512.0, True: 64.0})
  text = benchmark_tables.memory_summary(str(tmp_path))
  assert "grows by 512 MiB" in text and "by 64.0 MiB (8x less" in text
  assert "9 inner steps need 0.8 GiB instead of 4.8" in text


def test_surgical_sweep_verdict_is_the_one_rule_over_its_seeds():
  from jaxtl.studies.surgical import digits as sweep  # pylint: disable=import-outside-toplevel
  row = lambda *accs: {"test_accuracy": float(np.mean(accs)), "on_edge": False, "per_seed": [
      {"pretrain_seed": p, "seed": 100 * p, "test_accuracy": a} for p, a in enumerate(accs)]}
  results = {
      "input": {"num_classes": 10, "source_test_accuracy": 0.99, "strategies": {
          "block1": row(0.60, 0.61, 0.59), "block2": row(0.70, 0.71, 0.69),
          "head": row(0.65, 0.66, 0.64), "all": row(0.8, 0.8, 0.8)}},
      "output": {"num_classes": 10, "source_test_accuracy": 0.99, "strategies": {
          "block1": row(0.5, 0.5, 0.5), "block2": row(0.6, 0.6, 0.6),
          "head": row(0.95, 0.96, 0.94), "all": row(0.9, 0.9, 0.9)}}}
  lines = sweep.verdict(results).splitlines()
  assert lines[0].startswith("- input shift: **not reproduced**: paper: block1; best here: block2")
  assert lines[1].startswith("- output shift: **reproduced**: paper: head")


def test_omniglot_gaps_against_the_published_numbers(tmp_path):
  """A cell inside the paper's interval, one under it, and a run in progress whose pace
  comes from its training log."""
  def run(folder, way, accuracy, iterations, **metrics):
    os.makedirs(tmp_path / folder)
    config = {"dataset": "omniglot", "algorithm": "maml", "model": "conv4", "way": way,
              "shot": 1}
    with open(tmp_path / folder / "results.json", "w") as f:
      json.dump({"kind": "meta", "config": config, "evaluated_by": "experiments.meta_eval",
                 "metrics": {"test_accuracy": accuracy, "test_accuracy_ci95": 0.004,
                             "meta_iterations": iterations, **metrics}}, f)
  run("a_5w1s", 5, 0.985, 30000)
  run("b_20w1s/meta_eval", 20, 0.8, 6000, num_steps=60000)
  with open(tmp_path / "b_20w1s" / "metrics.jsonl", "w") as f:
    for step, accuracy in ((200, 0.4), (6000, 0.85)):
      f.write(json.dumps({"step": step, "query_accuracy": accuracy,
                          "meta_iterations_per_second": 0.5}) + "\n")
  assert meta_tables.omniglot_gaps(str(tmp_path)).splitlines() == [
      "- maml, 5-way 1-shot: 98.50 after 30,000 meta-iterations, inside Finn et al. 2017's "
      "interval (98.7 +- 0.4).",
      "- maml, 20-way 1-shot: 80.00 after 6,000 meta-iterations, 15.8 points under Finn et "
      "al. 2017's 95.8 +- 0.3. In progress: training query accuracy 40% at 200 "
      "meta-iterations, 85% at 6,000; 0.50 meta-iterations/s, so the remaining 54,000 "
      "would take 1.2 days at that pace."]


def _picks_inside(path, spec, label, picks):
  """Each pick strictly inside the values it tried, or 0 (no update: nothing below)."""
  for q in picks:
    tried = sorted(float(v) for v in q["val_accuracy"])
    value = q.get("learning_rate", q.get("l2"))
    inside = tried[0] < value < tried[-1] or value == 0.0
    assert inside and not q["on_edge"], (path, spec, label, q)


@pytest.mark.parametrize("name", ["compare_digits/results.json",
                                  "surgical_digits/multitask.json"])
def test_fine_tuning_sweeps_are_tuned_per_pre_training_inside_their_grids(name):
  """Issue 35: the sweeps' rows (`compare.tuned_row`) too: every pre-training's pick
  inside its grid, at least 3 pre-trainings, and the clean commit that made them."""
  with open(os.path.join(RESULTS, name)) as f:
    result = json.load(f)
  assert len(result["stamp"]["commit"]) == 40 and result["stamp"]["dirty"] is False
  config = result["config"]
  shifts = (result["metrics"] if "strategies" in next(iter(result["metrics"].values()))
            else {"": {"strategies": result["metrics"]}})
  for spec, shift in shifts.items():
    for label, row in shift["strategies"].items():
      assert len(row["picks"]) == len(config["pretrain_seeds"]) >= 3, (name, spec, label)
      _picks_inside(name, spec, label, row["picks"])


def test_rerun_surgical_tables_have_no_pick_on_a_grid_edge_and_name_their_commit():
  """Issue 35: every committed table of the rerun (results/surgical/VARIANT) was tuned
  inside its grids, per pre-training, and names the clean commit that produced it."""
  import glob  # pylint: disable=import-outside-toplevel
  paths = sorted(glob.glob(os.path.join(ROOT, "results", "surgical", "*", "results.json")))
  for path in paths:
    with open(path) as f:
      result = json.load(f)
    stamp = result["stamp"]
    assert len(stamp["commit"]) == 40 and stamp["dirty"] is False, (path, stamp)
    for spec, shift in result["metrics"].items():
      assert len(shift["pretrain_seeds"]) >= 3, (path, spec)
      for label, row in shift["strategies"].items():
        picks = row["picks"]
        assert len(picks) == len(shift["pretrain_seeds"]), (path, spec, label)
        _picks_inside(path, spec, label, picks)
