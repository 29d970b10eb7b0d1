"""What the benchmarks share, with no flags (so that one benchmark can import another's
pieces): the fine-tuning trainer's step ready to time, interleaved timing, provenance."""
import shlex
import sys
import time
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import finetune as finetune_configs
from jaxtl import objectives, partition, workdir
from jaxtl.finetune import prefix, strategies, trainer
from jaxtl.models import build_model


# The benchmarks' fine-tuning strategies: name -> the digits config's overrides.
STRATEGIES = {
    "full": dict(strategy="full"),
    "linear_probe": dict(strategy="linear_probe"),
    "surgical_block1": dict(strategy="surgical", blocks=("block1",)),
    "surgical_block2": dict(strategy="surgical", blocks=("block2",)),
    "surgical_block3": dict(strategy="surgical", blocks=("block3",)),
    "freeze_first_2": dict(strategy="freeze_first_k", freeze_k=2),
    "l2sp": dict(strategy="l2sp"),
}


def strategy_step(overrides, batch_size, image_size, conv, cached=False):
  """(step, state, args, trainable parameters): the fine-tuning trainer's jitted step for
  `overrides` of the digits config on random images; `step(state, *args)` -> (state, loss).
  `cached`: batch norm frozen and the frozen leading blocks run once on the images, as
  the trainer then does (`jaxtl.finetune.prefix`); the step runs the rest."""
  config = finetune_configs.get_config("digits")
  config.update(overrides)
  if cached:
    config.batch_norm = "frozen"
  model = build_model("resnet", num_classes=10, widths=tuple(config.model_kwargs.widths),
                      conv=conv)
  n = batch_size * 4
  x = jax.random.uniform(jax.random.PRNGKey(0), (n, image_size, image_size, 1))
  y = jnp.arange(n) % 10
  variables = model.init(jax.random.PRNGKey(1), x[:1], train=False)
  labels = partition.label_params(variables["params"],
                                  strategies.phases(config, model.block_names())[0].table)
  keep = lambda l: l is not None
  trainable, _ = partition.split(variables["params"], labels, keep)
  tx = trainer.make_optimizer(config, partition.split(labels, labels, keep)[0])
  start = 0
  if cached:
    supervised = objectives.make("supervised", {}, 10, x.shape[1:])
    start = trainer.frozen_prefix(model, variables, labels, config, supervised, x)
    x = prefix.prefix_features(model, variables, x, start)
  step = trainer.make_train_step(model, tx, labels, config, batch_size, n, start=start)
  state = dict(step=jnp.zeros((), jnp.int32), params=variables["params"],
               batch_stats=variables["batch_stats"], opt_state=tx.init(trainable))
  anchor = jax.tree_util.tree_map(jnp.copy, trainable) if config.strategy == "l2sp" else {}
  order = trainer.epoch_order(jax.random.PRNGKey(2), 0, n)
  return step, state, (anchor, x, y, order), partition.count(trainable)


def prepare_strategy(overrides, batch_size, image_size, conv, cached=False):
  """(block, trainable parameters): block(steps) -> steps per second of `strategy_step`,
  after 3 warm-up steps."""
  step, state, args, trainable = strategy_step(overrides, batch_size, image_size, conv, cached)
  block = timed(stepping(step, state, args))
  block(3)  # warm-up, compiles
  return block, trainable


def stepping(step, state, args):
  """call() -> loss: one `step(state, *args)`, the state carried from call to call."""
  box = {"state": state}

  def call():
    box["state"], loss = step(box["state"], *args)
    return loss
  return call


def timed(call):
  """block(calls) -> calls per second of `call()` (which returns arrays), waited for."""
  def block(calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
      out = call()
    jax.block_until_ready(out)
    return calls / (time.perf_counter() - t0)
  return block


def compiled_cost(jitted, *args) -> dict:
  """XLA's own count of a jitted call's work: {"gflop", "gbytes"} (floating-point
  operations and bytes its operations read and write, in billions). XLA counts a loop's
  body once, whatever its trip count: time calls without loops (or divide yourself)."""
  cost = jitted.lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return {"gflop": cost["flops"] / 1e9, "gbytes": cost["bytes accessed"] / 1e9}


def interleaved(cases, repeats: int, unit: str = "meta_iterations_per_second") -> list:
  """Each case's row with the median (`unit`) and range of its rate over `repeats`
  rounds, a round timing every case once in turn (A B C A B C ...), so that a slow phase
  of the machine falls on all of them. `cases`: (row, block, calls)."""
  rates = [[] for _ in cases]
  for _ in range(repeats):
    for i, (_, block, calls) in enumerate(cases):
      rates[i].append(block(calls))
  return [{**row, unit: float(np.median(r)), f"{unit}_range": [float(min(r)), float(max(r))],
           "rates": [float(x) for x in r]} for (row, _, _), r in zip(cases, rates)]


def ratio_lines(rows, group: str, unit: str) -> list[str]:
  """For each value of `group` (a row's key), jaxtl's fastest row over each other row:
  "5w1s: jaxtl (...) / torch.func = 1.42x", rates in `unit`."""
  lines = []
  for value in dict.fromkeys(r[group] for r in rows):
    mine = [r for r in rows if r[group] == value]
    best = max((r for r in mine if r["method"].startswith("jaxtl")), key=lambda r: r[unit])
    lines += [f"{value}: {best['method']} / {r['method']} = {best[unit] / r[unit]:.2f}x"
              for r in mine if not r["method"].startswith("jaxtl")]
  return lines


def roofline_bounds(rows) -> list[dict]:
  """`benchmarks.roofline`'s rows (`interleaved` with unit "per_second", and
  `compiled_cost`) with each one's milliseconds, achieved rates, and the milliseconds its
  work would take at each probe's rate: its flops at an "arithmetic probe"'s GFLOP/s, its
  bytes at a "memory probe"'s GB/s."""
  work = {"arithmetic probe": "gflop", "memory probe": "gbytes"}
  probes = [p for p in rows if p["kind"] in work]
  return [{**r, "ms": 1e3 / r["per_second"], "gflop_per_s": r["gflop"] * r["per_second"],
           "gbytes_per_s": r["gbytes"] * r["per_second"],
           "ms_at_probe_rate": {p["case"]: 1e3 * r[work[p["kind"]]]
                                / (p[work[p["kind"]]] * p["per_second"]) for p in probes}}
          for r in rows]


def provenance(module: str = "benchmarks.maml_throughput") -> dict:
  """Machine, versions and command line, so that a table made from the JSON says where
  its numbers come from."""
  machine = workdir.machine()
  if jax.default_backend() == "cpu":
    with open("/proc/cpuinfo") as f:
      model = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    machine += f" ({model[0]})" if model else ""
  versions = {}
  for package in ("jax", "torch"):
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      continue
  command = f"python -m {module} " + shlex.join(sys.argv[1:])  # quoted: pastes as run
  return {"machine": machine, "versions": versions, "command": command}
