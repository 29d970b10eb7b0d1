"""Step time of each fine-tuning strategy relative to full fine-tuning, and of ANIL's
meta-step relative to MAML's, in one run.

    python -m benchmarks.finetune_cost [--batch_size=128] [--image_size=28] [--out=FILE.json]

The ResNet of the transfer experiments on random 28x28 images (step time does not
depend on pixel values). Each strategy's jitted step is timed as the median of
`--repeats` blocks of `--steps` steps, after a warm-up that includes compilation.
The meta-steps are `benchmarks.meta_step`'s (Omniglot 5-way 1-shot, 32 tasks).
"""
import json

import jax
import numpy as np
from absl import app, flags

from benchmarks import meta_step, timing
from jaxtl.runtime import log_versions

_BATCH = flags.DEFINE_integer("batch_size", 128, "Examples per step.")
_SIZE = flags.DEFINE_integer("image_size", 28, "Image height and width.")
_STEPS = flags.DEFINE_integer("steps", 20, "Steps per timed block.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed blocks; the median is reported.")
_CONV = flags.DEFINE_string("conv", "xla", "The ResNet's conv kernels: xla or im2col.")
_META = flags.DEFINE_string("meta_setting", "5w1s", "Meta-step setting; empty to skip.")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")

CASES = timing.STRATEGIES


def time_strategy(overrides, batch_size, image_size, steps, repeats, conv):
  """(median seconds per step over `repeats` blocks of `steps`, trainable parameters)."""
  block, trainable = timing.prepare_strategy(overrides, batch_size, image_size, conv)
  return float(np.median([1 / block(steps) for _ in range(repeats)])), trainable


def main(argv):
  del argv
  log_versions()
  results = {}
  for name, overrides in CASES.items():
    seconds, trainable = time_strategy(overrides, _BATCH.value, _SIZE.value, _STEPS.value,
                                       _REPEATS.value, _CONV.value)
    results[name] = {"step_ms": 1e3 * seconds, "trainable_params": trainable}
  full = results["full"]["step_ms"]
  print(f"ResNet fine-tuning step, batch {_BATCH.value}, {_SIZE.value}x{_SIZE.value}, "
        f"backend {jax.default_backend()}")
  print("| strategy | trainable params | step (ms) | relative to full |\n|---|---:|---:|---:|")
  for name, r in results.items():
    r["relative_to_full"] = r["step_ms"] / full
    print(f"| {name} | {r['trainable_params']:,} | {r['step_ms']:.2f} | "
          f"{r['relative_to_full']:.2f} |")
  meta = {}
  if _META.value:
    for algorithm in ("maml", "anil"):
      rate = meta_step.measure(_META.value, "auto", "auto", 2, _REPEATS.value, 5,
                               algorithm)["meta_iterations_per_second"]
      meta[algorithm] = {"step_ms": 1e3 / rate, "relative_to_maml": None}
    print(f"\nmeta-step, Omniglot {_META.value}\n| algorithm | step (ms) | relative to MAML |"
          "\n|---|---:|---:|")
    for name, r in meta.items():
      r["relative_to_maml"] = r["step_ms"] / meta["maml"]["step_ms"]
      print(f"| {name} | {r['step_ms']:.1f} | {r['relative_to_maml']:.2f} |")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump({"backend": jax.default_backend(), "batch_size": _BATCH.value,
                 "image_size": _SIZE.value, "conv": _CONV.value, "results": results,
                 "meta_step": meta}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
