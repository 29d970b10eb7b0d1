"""The benchmarks' tables (`benchmarks/`): each reads one committed JSON file under
`results/benchmarks/` and states the machine, versions and command it recorded."""
import numpy as np

from jaxtl.report import load


def finetune_grid_table(root: str) -> str:
  """The grid against one run per configuration (`benchmarks.finetune_grid`)."""
  b = load(root, "benchmarks/finetune_grid_cpu.json")
  arms = [a for a in ("process_per_configuration", "one_at_a_time") if a in b["total"]]
  names = {"process_per_configuration": "a process per configuration",
           "one_at_a_time": "one at a time, in one process"}
  lines = [_benchmark_caption(b) + f"{b['configurations_per_strategy']} configurations "
           f"(lr x wd) per strategy, {b['steps']} steps of {b['batch_size']} each; seconds, "
           "and the grid's speed-up over each:\n",
           "| strategy | " + " | ".join(names[a] + " (s)" for a in arms) + " | grid (s) | "
           + " | ".join(f"speed-up vs {names[a]}" for a in arms) + " |",
           "|---|" + "---:|" * (2 * len(arms) + 1)]
  rows = list(b["strategies"].items()) + [("**total**", b["total"])]
  for label, r in rows:
    lines.append(f"| {label} | " + " | ".join(f"{r[a]:.1f}" for a in arms)
                 + f" | {r['grid']:.1f} | " + " | ".join(f"{r[a] / r['grid']:.2f}x" for a in arms)
                 + " |")
  return "\n".join(lines)


def _benchmark_caption(b: dict) -> str:
  """Where and with what a benchmark ran, as its JSON recorded it."""
  parts = [b.get("machine") or b.get("device", "")]
  parts += [f"{k} {v}" for k, v in b.get("versions", {}).items()]
  line = "; ".join(p for p in parts if p)
  if b.get("command"):
    line += f"; `{b['command']}`"
  return f"Measured on: {line}.\n\n" if line else ""


def _throughput(root: str):
  """Settings in order, jaxtl's fastest row and each peer's row per setting."""
  b = load(root, "benchmarks/maml_throughput_cpu.json")
  settings = list(dict.fromkeys(r["setting"] for r in b["results"]))
  peers = list(dict.fromkeys(r["method"] for r in b["results"]
                             if not r["method"].startswith("jaxtl")))
  ours, theirs = {}, {}
  for r in b["results"]:
    if r["method"].startswith("jaxtl"):
      best = ours.get(r["setting"])
      if best is None or r["meta_iterations_per_second"] > best["meta_iterations_per_second"]:
        ours[r["setting"]] = r
    else:
      theirs[r["setting"], r["method"]] = r["meta_iterations_per_second"]
  return b, settings, peers, ours, theirs


def _setting_name(r: dict) -> str:
  steps = r["inner_steps"]
  return (f"{r['way']}-way {r['shot']}-shot, {r['meta_batch']} tasks, "
          f"{steps} step{'s' if steps != 1 else ''}")


def throughput_table(root: str) -> str:
  """Meta-iterations per second, jaxtl against each PyTorch peer; the fastest in bold."""
  b, settings, peers, ours, theirs = _throughput(root)
  lines = ["| setting | jaxtl | " + " | ".join(peers) + " |", "|---|" + "---:|" * (1 + len(peers))]
  for s in settings:
    rates = [ours[s]["meta_iterations_per_second"]] + [theirs.get((s, p)) for p in peers]
    top = max(x for x in rates if x is not None)
    cells = ["" if x is None else (f"**{x:.2f}**" if x == top else f"{x:.2f}") for x in rates]
    lines.append(f"| {_setting_name(ours[s])} | " + " | ".join(cells) + " |")
  return _benchmark_caption(b) + "\n".join(lines)


def _with_range(b: dict, setting: str, method: str) -> str:
  """A method's median rate, with its range over the interleaved rounds where recorded."""
  (r,) = [r for r in b["results"] if (r["setting"], r["method"]) == (setting, method)]
  text = f"{r['meta_iterations_per_second']:.2f}"
  if "meta_iterations_per_second_range" in r:
    low, high = r["meta_iterations_per_second_range"]
    text += f" ({low:.2f}-{high:.2f})"
  return text


def throughput_ratio_table(root: str) -> str:
  """The same numbers with each of jaxtl's ways of running named (e.g. on one device and
  split over the cores), each with its range over the rounds where recorded, and jaxtl's
  fastest over each peer (medians)."""
  b, settings, peers, ours, theirs = _throughput(root)
  methods = list(dict.fromkeys(r["method"] for r in b["results"]
                               if r["method"].startswith("jaxtl")))
  ran = {(r["setting"], r["method"]) for r in b["results"]}
  lines = ["| setting | " + " | ".join(methods + peers)
           + " | " + " | ".join(f"jaxtl / {p}" for p in peers) + " |",
           "|---|" + "---:|" * (len(methods) + 2 * len(peers))]
  for s in settings:
    mine = ours[s]["meta_iterations_per_second"]
    cells = [_with_range(b, s, m) if (s, m) in ran else "" for m in methods]
    cells += ["" if theirs.get((s, p)) is None else _with_range(b, s, p) for p in peers]
    cells += ["" if theirs.get((s, p)) is None else f"{mine / theirs[s, p]:.2f}x" for p in peers]
    lines.append(f"| {_setting_name(ours[s])} | " + " | ".join(cells) + " |")
  not_run = "".join(f"\n\nNot run: {reason}." for reason in b.get("not_run", []))
  return _benchmark_caption(b) + "\n".join(lines) + not_run


STEP_CASES = {"finetune_full": "fine-tuning step, full (ResNet, batch {batch})",
              "finetune_linear_probe": "fine-tuning step, linear probe (ResNet, batch {batch})",
              "finetune_surgical_block3": "fine-tuning step, last block (ResNet, batch {batch})",
              "sinusoid": "sinusoid MAML meta-iteration (25 tasks, 1 inner step)"}


def step_table(path: str):
  """table(root): steps per second of each case in the benchmark JSON at root/path,
  jaxtl against PyTorch (median and range over the interleaved rounds), and jaxtl's
  fastest over each PyTorch method."""
  return lambda root: _step_table(load(root, path))


def _step_table(b: dict) -> str:
  lines = ["| case | method | per second (range) | jaxtl / this |", "|---|---|---:|---:|"]
  for case in dict.fromkeys(r["case"] for r in b["results"]):
    rows = [r for r in b["results"] if r["case"] == case]
    ours = max((r["per_second"] for r in rows if r["method"].startswith("jaxtl")),
               default=None)
    name = STEP_CASES.get(case, case).format(batch=b.get("batch_size"))
    for r in rows:
      low, high = r["per_second_range"]
      ratio = ("" if ours is None or r["method"].startswith("jaxtl") else
               f"{ours / r['per_second']:.2f}x")
      digits = 1 if low >= 1 else 2  # two decimals for the slow steps
      lines.append(f"| {name} | {r['method']} | {r['per_second']:.{digits}f} "
                   f"({low:.{digits}f}-{high:.{digits}f}) | {ratio} |")
  checks = "".join(f"\n\nCheck: {k.replace('_', ' ')} {v:.1e}."
                   for k, v in b.get("checks", {}).items())
  return _benchmark_caption(b) + "\n".join(lines) + checks


step_throughput_table = step_table("benchmarks/step_throughput_cpu.json")


def conv_cost_table(root: str) -> str:
  """Milliseconds per convolution of the ResNet, forward and forward + backward, per
  method; the last row sums one forward pass's convolutions (`count` each)."""
  b = load(root, "benchmarks/conv_cost_cpu.json")
  columns = list(dict.fromkeys((r["method"], r["pass"]) for r in b["results"]))
  shape_of = lambda r: (r["input"], r["in"], r["out"], r["kernel"], r["stride"], r["count"])
  shapes = list(dict.fromkeys(shape_of(r) for r in b["results"]))
  ms = {(shape_of(r), r["method"], r["pass"]): r["ms"] for r in b["results"]}
  # What conv="measured" would pick from these timings: the faster jax kernel, forward
  # + backward (it measures the same pass, on the machine it runs on).
  kernels = {"jax xla": "xla", "jax im2col": "im2col"}
  both = all((shape, m, "forward + backward") in ms for shape in shapes for m in kernels)
  faster = lambda shape: min(kernels, key=lambda m: ms[(shape, m, "forward + backward")])
  lines = ["| convolution (batch %d) | x | " % b["batch_size"]
           + " | ".join(f"{m}, {p}" for m, p in columns) + " |"
           + (" faster jax kernel |" if both else ""),
           "|---|---:|" + "---:|" * len(columns) + ("---|" if both else "")]
  for shape in shapes:
    size, cin, cout, k, stride, count = shape
    lines.append(f"| {size}x{size}x{cin} -> {cout}, {k}x{k} stride {stride} | {count} | "
                 + " | ".join(f"{ms[(shape, *c)]:.2f}" for c in columns) + " |"
                 + (f" {kernels[faster(shape)]} |" if both else ""))
  totals = [sum(ms[(shape, *c)] * shape[-1] for shape in shapes) for c in columns]
  lines.append("| all, one step's worth | | " + " | ".join(f"**{t:.1f}**" for t in totals)
               + " |")
  if both:
    best = sum(ms[(shape, faster(shape), "forward + backward")] * shape[-1] for shape in shapes)
    lines[-1] += f" **{best:.1f}** forward + backward |"
  return _benchmark_caption(b) + "\n".join(lines)


def roofline_table(root: str) -> str:
  """Each step's time against the time its work would take at the rates of the machine's
  probes (a matrix product's GFLOP/s, a copy's GB/s), measured in the same run
  (`benchmarks.roofline`)."""
  b = load(root, "benchmarks/roofline_cpu.json")
  probes = [r for r in b["results"] if r["kind"].endswith("probe")]
  steps = [r for r in b["results"] if not r["kind"].endswith("probe")]
  rate = lambda p: (f"{p['gflop_per_s']:.1f} GFLOP/s" if p["kind"] == "arithmetic probe"
                    else f"{p['gbytes_per_s']:.1f} GB/s")
  lines = ["| step | ms | GFLOP | GB moved | GFLOP/s | "
           + " | ".join(f"ms at {p['case']}'s {rate(p)}" for p in probes) + " |",
           "|---|---:|---:|---:|---:|" + "---:|" * len(probes)]
  for r in steps:
    lines.append(f"| {r['case']} | {r['ms']:.1f} | {r['gflop']:.2f} | {r['gbytes']:.2f} | "
                 f"{r['gflop_per_s']:.1f} | " + " | ".join(
                     f"{r['ms_at_probe_rate'][p['case']]:.1f}" for p in probes) + " |")
  return _benchmark_caption(b) + "\n".join(lines)


def finetune_cost_table(root: str) -> str:
  """Milliseconds per fine-tuning step for each strategy, and relative to full."""
  b = load(root, "benchmarks/finetune_cost_cpu.json")
  lines = ["| strategy | trainable params | step (ms) | relative to full |",
           "|---|---:|---:|---:|"]
  for name, r in b["results"].items():
    lines.append(f"| {name} | {r['trainable_params']:,} | {r['step_ms']:.2f} | "
                 f"{r['relative_to_full']:.2f} |")
  return "\n".join(lines)


def meta_step_cost_table(root: str) -> str:
  """Milliseconds per meta-step for each algorithm, and relative to MAML."""
  b = load(root, "benchmarks/finetune_cost_cpu.json")
  lines = ["| meta-step | step (ms) | relative to MAML |", "|---|---:|---:|"]
  for name, r in b["meta_step"].items():
    lines.append(f"| {name} | {r['step_ms']:.1f} | {r['relative_to_maml']:.2f} |")
  return "\n".join(lines)


def objectives_throughput_table(root: str) -> str:
  """Pre-training images per second for each objective, and the share of a step spent
  making its inputs (`benchmarks.objectives_throughput`)."""
  b = load(root, "benchmarks/objectives_throughput_cpu.json")
  lines = [f"{b['machine']}, Conv4 ({b['features']} features) on {b['batch_size']} source images "
           f"of {'x'.join(map(str, b['image_shape']))} per step; median (range) over "
           f"{b['repeats']} interleaved blocks of {b['steps']} steps\n",
           "| objective | images/s | step (ms) | inputs (ms) | inputs / step |",
           "|---|---:|---:|---:|---:|"]
  for name, r in b["objectives"].items():
    low, high = r["images_per_second_range"]
    lines.append(f"| {name} | {r['images_per_second']:.0f} ({low:.0f}-{high:.0f}) | "
                 f"{r['step_ms']:.1f} | {r['prepare_ms']:.1f} | {100 * r['input_share']:.0f}% |")
  return "\n".join(lines)


def memory_table(root: str) -> str:
  """Peak memory, compile time and step time of second-order MAML per inner-step count,
  plain and rematerialised."""
  b = load(root, "benchmarks/maml_memory_cpu.json")
  rows = {(r["inner_steps"], r["remat"]): r for r in b["results"]}
  steps = sorted({k for k, _ in rows})
  lines = ["| inner steps | " + " | ".join(str(k) for k in steps) + " |",
           "|---|" + "---:|" * len(steps)]
  for label, remat in (("peak GiB, plain", False), ("peak GiB, `remat=True`", True)):
    lines.append(f"| {label} | " + " | ".join(
        f"{rows[k, remat]['peak_gib']:.2f}" if (k, remat) in rows else "" for k in steps) + " |")
  for label, key, digits in (("compile s", "compile_seconds", 1),
                             ("s per meta-iteration", "seconds_per_meta_iteration", 2)):
    cells = [" / ".join(f"{rows[k, m][key]:.{digits}f}" if (k, m) in rows else "-"
                        for m in (False, True)) for k in steps]
    lines.append(f"| {label}, plain / remat | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def memory_growth(results: list) -> dict:
  """{remat: MiB of peak memory per inner step}, the least-squares slope over the
  inner-step counts measured (`benchmarks.maml_memory`'s rows)."""
  growth = {}
  for remat in (False, True):
    rows = [r for r in results if r["remat"] == remat]
    if len(rows) > 1:
      steps, peak = [r["inner_steps"] for r in rows], [r["peak_gib"] for r in rows]
      growth[remat] = 1024 * float(np.polyfit(steps, peak, 1)[0])
  return growth


def memory_summary(root: str) -> str:
  """What rematerialising each inner step saves, in a sentence from the memory table's
  JSON."""
  b = load(root, "benchmarks/maml_memory_cpu.json")
  growth = memory_growth(b["results"])
  most = max(r["inner_steps"] for r in b["results"])
  peak = {r["remat"]: r["peak_gib"] for r in b["results"] if r["inner_steps"] == most}
  r = b["results"][0]
  return (f"Second-order MAML, {r['setting']} with {r['meta_batch']} tasks: without remat, "
          f"peak memory grows by {growth[False]:.0f} MiB per inner step (every step's "
          f"activations are kept for the outer gradient); with `jax.checkpoint` around each "
          f"inner step (`--config.remat=True`), by {growth[True]:.1f} MiB "
          f"({growth[False] / growth[True]:.0f}x less: only each step's fast weights are "
          f"kept), so {most} inner steps need {peak[True]:.1f} GiB instead of "
          f"{peak[False]:.1f}.")


def lecture_seeds_table(root: str) -> str:
  """The lecture's test MSE after 1 / 5 / 10 steps under other seeds
  (`benchmarks.lecture_seeds`), with the fine-tuning step size picked on validation."""
  b = load(root, "benchmarks/lecture_seeds.json")
  lines = ["| seed | MAML | pre-train, fine-tune (lr) | multi-task, fine-tune (lr) |",
           "|---:|---|---|---|"]
  for seed, r in b["seeds"].items():
    cell = lambda m: " / ".join(f"{r[m]['test_mse_by_steps'][k]:.2f}" for k in ("1", "5", "10"))
    lines.append(f"| {seed} | {cell('maml')} | {cell('pretrain')} ({r['pretrain']['finetune_lr']:g})"
                 f" | {cell('multitask')} ({r['multitask']['finetune_lr']:g}) |")
  return "\n".join(lines)


def surgical_wall_table(root: str) -> str:
  """The surgical study's rows with and without the frozen-prefix cache
  (`benchmarks.surgical_wall`)."""
  b = load(root, "benchmarks/surgical_wall_cpu.json")
  lines = [_benchmark_caption(b) + f"The surgical study's code on `{b['shift']}`, "
           f"{len(b['pretrain_seeds'])} pre-trained network"
           f"{'s' if len(b['pretrain_seeds']) > 1 else ''}, each row tuned from its "
           f"starting grid {b['lr_grid']} as the study does; seconds per row (the arm "
           "that ran a row first compiled what the other may reuse; which one alternates "
           "by row):\n",
           "| row | cached (s) | every step (s) | speed-up | ran first | test accuracy, "
           "cached / every step | picks, cached / every step |",
           "|---|---:|---:|---:|---|---:|---|"]
  for label, r in b["rows"].items():
    c, e = r["cached"], r["every_step"]
    timed = (f"{c['seconds']:.1f} | {e['seconds']:.1f} | {r['speedup']:.2f}x | "
             + r["first"].replace("_", " ") if "seconds" in c else "(timed with lp_ft) | | | ")
    lines.append(f"| {label} | {timed} | {100 * c['test_accuracy']:.2f} / "
                 f"{100 * e['test_accuracy']:.2f} | "
                 f"{', '.join(f'{v:g}' for v in c['picks'])} / "
                 f"{', '.join(f'{v:g}' for v in e['picks'])} |")
  t = b["total"]
  lines.append(f"| **total** | {t['cached']:.1f} | {t['every_step']:.1f} | "
               f"{t['speedup']:.2f}x | | | |")
  # Rows that train the first block, or normalise with batch statistics (no prefix is
  # then deterministic), cache nothing: with the cache they take as long as without, so
  # even if every other row took no time the study could not be faster than their share
  # allows.
  first = b["blocks"][0]
  unbounded = [k for k, r in b["rows"].items() if r.get("cached_blocks") == 0]
  floor = sum(b["rows"][k]["cached"]["seconds"] for k in unbounded)
  lines += ["", f"The rows that cache nothing ({', '.join(unbounded)}: they train {first} "
            f"or normalise with batch statistics) take {floor:.0f} s of the cached study's "
            f"{t['cached']:.0f} s, so with every other row free the study would be at most "
            f"{t['every_step'] / floor:.2f}x faster than without the cache. Every pick and "
            "every test accuracy is the same in both arms "
            f"(largest difference {100 * b['max_test_accuracy_difference']:.2f} points)."
            if b["same_picks"] else "The arms' picks differ: see the table."]
  return "\n".join(lines)


def bn_fold_table(root: str) -> str:
  """The fine-tuning step with batch norm folded into its convolution, as two operations,
  and without batch norm (`benchmarks.bn_fold`)."""
  b = load(root, "benchmarks/bn_fold_cpu.json")
  arms = (("unfolded", "batch norm after its conv"), ("folded", "folded (jaxtl)"),
          ("no_batch_norm", "no batch norm"))
  lines = [_benchmark_caption(b) + f"The trainer's step, batch norm frozen, batch "
           f"{b['batch_size']} of {b['image_size']}x{b['image_size']} images; steps per "
           "second, median (range) of interleaved rounds:\n",
           "| strategy | " + " | ".join(name for _, name in arms)
           + " | folded / unfolded | no batch norm / unfolded |",
           "|---|" + "---:|" * (len(arms) + 2)]
  for label, c in b["cases"].items():
    lines.append(f"| {label} | " + " | ".join(
        f"{c[a]['steps_per_second']:.1f} ({c[a]['range'][0]:.1f}-{c[a]['range'][1]:.1f})"
        for a, _ in arms) + f" | {c['speedup']:.2f}x | {c['without_batch_norm']:.2f}x |")
  return "\n".join(lines)
