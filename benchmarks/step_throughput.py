"""Fine-tuning steps and sinusoid MAML, jaxtl side by side with PyTorch in one run.

    python -m benchmarks.step_throughput [--out=FILE.json] [--repeats=5]
        [--cases=finetune_full,finetune_linear_probe,finetune_surgical_block3,sinusoid]
        [--compiled=true]

  * `finetune_full`, `finetune_linear_probe`, `finetune_surgical_block3` (the last
    block, head frozen): a step of the transfer experiments' ResNet (widths 16, 32, 64)
    on a batch of `--batch_size` random 28x28 images, Adam, training the same
    parameters in both; jaxtl's trainer step (`benchmarks.timing.prepare_strategy`),
    PyTorch's (`torch_steps.ResNet`). The linear probe and the last block also as the
    trainer runs them with batch norm frozen: the frozen blocks' output computed once
    (`jaxtl.finetune.prefix`), each step the rest ("jaxtl, cached prefix"; that one-off
    pass is not in its rate).
  * `sinusoid`: second-order MAML as the Quick start's job runs it (MLP 40-40, 25 tasks
    of K=10 points, one inner step at 0.01, Adam); jaxtl's meta-step with the job's
    `steps_per_call` and with 1 (a host round trip per iteration, as PyTorch has), and
    torch.func (`torch_steps.sinusoid_meta_step`), whose meta-gradient is first checked
    against jaxtl's on the same weights and points.
`--compiled` adds each PyTorch case under `torch.compile`. Rates are steps (or
meta-iterations) per second: the median and range over `--repeats` interleaved rounds
(`benchmarks.timing.interleaved`). PyTorch: `pip install -e '.[peers]'`.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import meta_step
from benchmarks.timing import (STRATEGIES, interleaved, prepare_strategy, provenance,
                               ratio_lines)
from experiments.configs import meta as meta_configs
from jaxtl.meta import train
from jaxtl.runtime import log_versions

CASES = ("finetune_full", "finetune_linear_probe", "finetune_surgical_block3", "sinusoid")
_CASES = flags.DEFINE_list("cases", list(CASES), f"Which of {CASES}.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Fine-tuning images per step.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved rounds; median and range reported.")
_CALLS = flags.DEFINE_integer("calls", 20, "Steps per timed block (fine-tuning; PyTorch's "
                              "sinusoid meta-iterations).")
_COMPILED = flags.DEFINE_bool("compiled", True, "Also time PyTorch under torch.compile.")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")


def check_sinusoid_gradient(config) -> float:
  """Largest |jaxtl - torch| meta-gradient entry over the largest entry, same weights
  and points; raises if above float32's reach (1e-4)."""
  import torch  # pylint: disable=import-outside-toplevel
  from benchmarks import torch_steps  # pylint: disable=import-outside-toplevel
  learner = train.make_learner(config)
  sampler = train.make_task_data(config).train_sampler
  episodes = sampler(jax.random.PRNGKey(3), None, config.meta_batch)
  meta_params, _ = learner.init(jax.random.PRNGKey(0), episodes.support_x[0])
  _, grads = learner.meta_gradients(meta_params, {}, episodes)
  layers = ["block1/dense", "block2/dense", "head"]
  leaf = lambda tree, path: tree["params"][path.split("/")[0]][path.split("/")[1]] \
      if "/" in path else tree["params"][path]
  as_torch = lambda a: torch.tensor(np.asarray(a, np.float32))
  params = {}
  for i, path in enumerate(layers):
    params[f"w{i}"] = as_torch(leaf(meta_params, path)["kernel"]).T.contiguous()
    params[f"b{i}"] = as_torch(leaf(meta_params, path)["bias"])
  x = as_torch(jnp.concatenate([episodes.support_x, episodes.query_x], 1))
  y = as_torch(jnp.concatenate([episodes.support_y, episodes.query_y], 1))
  theirs = torch_steps.sinusoid_meta_gradient(params, x, y, config.shot, config.inner_lr)
  ours = {}
  for i, path in enumerate(layers):
    ours[f"w{i}"] = np.asarray(leaf(grads, path)["kernel"]).T
    ours[f"b{i}"] = np.asarray(leaf(grads, path)["bias"])
  scale = max(np.abs(v).max() for v in ours.values())
  error = max(np.abs(ours[k] - theirs[k].numpy()).max() for k in ours) / scale
  if not error < 1e-4:
    raise AssertionError(f"torch.func's sinusoid meta-gradient differs from jaxtl's by "
                         f"{error:.1e} of its largest entry.")
  return float(error)


def cases(names, batch_size, calls, compiled) -> tuple[list, dict]:
  """(row, block, calls) of every method of `names`, warmed up; and the checks made."""
  from benchmarks import torch_steps  # pylint: disable=import-outside-toplevel
  out, checks = [], {}
  torch_variants = [("PyTorch", False)] + ([("PyTorch compiled", True)] if compiled else [])
  for name in names:
    if name not in CASES:
      raise ValueError(f"Unknown case {name!r}; valid: {list(CASES)}.")
    if name.startswith("finetune_"):
      strategy = name[len("finetune_"):]
      block, _ = prepare_strategy(STRATEGIES[strategy], batch_size, 28, "xla")
      out.append(({"case": name, "method": "jaxtl"}, block, calls))
      if strategy != "full":  # the trainer's frozen prefix, run once (batch norm frozen)
        block, _ = prepare_strategy(STRATEGIES[strategy], batch_size, 28, "xla", cached=True)
        out.append(({"case": name, "method": "jaxtl, cached prefix"}, block, calls))
      for label, flag in torch_variants:
        out.append(({"case": name, "method": label},
                    torch_steps.finetune_step(strategy, batch_size, compiled=flag), calls))
      continue
    config = meta_configs.get_config("sinusoid")
    checks["sinusoid_meta_gradient_relative_error"] = check_sinusoid_gradient(config)
    for steps_per_call in (config.steps_per_call, 1):
      row, block = meta_step.prepare("sinusoid", "auto", "auto", steps_per_call)
      method = f"jaxtl ({steps_per_call} per call)"
      out.append(({"case": name, "method": method,
                   "first_call_seconds": row["first_call_seconds"]}, block,
                  max(1, calls * 10 // steps_per_call)))
    for label, flag in torch_variants:
      block = torch_steps.sinusoid_meta_step(config.meta_batch, config.shot, config.query,
                                             config.inner_lr, config.meta_lr, compiled=flag)
      out.append(({"case": name, "method": f"torch.func{' compiled' if flag else ''}"},
                  block, calls * 10))
  return out, checks


def main(argv):
  del argv
  log_versions()
  timed, checks = cases(_CASES.value, _BATCH.value, _CALLS.value, _COMPILED.value)
  rows = interleaved(timed, _REPEATS.value, unit="per_second")
  print("| case | method | per second | range |\n|---|---|---:|---|")
  for r in rows:
    low, high = r["per_second_range"]
    print(f"| {r['case']} | {r['method']} | {r['per_second']:.1f} | {low:.1f}-{high:.1f} |")
  ratios = ratio_lines(rows, "case", "per_second")
  print("\n".join(ratios), "\n", checks)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump({"backend": jax.default_backend(), "batch_size": _BATCH.value,
                 **provenance("benchmarks.step_throughput"), "results": rows,
                 "ratios": ratios, "checks": checks}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
