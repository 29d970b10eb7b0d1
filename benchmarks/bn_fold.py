"""Batch norm folded into its convolution (`jaxtl.models.layers.conv_bn`, the default)
against the two as separate operations and against no batch norm at all: issue 33's
"batch norm folded into frozen convolutions, if the benchmark shows it pays".

    python -m benchmarks.bn_fold [--repeats=7] [--out=FILE.json]

With running statistics (batch norm frozen), bn(conv(x, W)) equals conv(x, W * m) +
(bias - mean * m), m = scale / sqrt(var + eps) per channel: the per-element
normalisation (and, where the scale trains, its per-element reduction in the backward
pass) becomes kernel-sized work; the convolution and the ReLU or residual add remain. The
fine-tuning trainer's step (`benchmarks.timing.strategy_step`, batch norm frozen) of the
transfer experiments' ResNet on random 28x28 images, in three arms, interleaved:
  * `unfolded`: each batch norm a separate operation after its convolution;
  * `folded`: `conv_bn`, as jaxtl computes it;
  * `no_batch_norm`: every batch norm an identity (not the same function): the whole
    of batch norm's cost, which folding should recover.
The strategies: block 1 (blocks 2-3 frozen after it), block 2 on the cached block 1
(block 3 frozen after it), and full fine-tuning.
"""
import contextlib
import json

import flax.linen as nn
import jax.numpy as jnp
from absl import app, flags

from benchmarks import timing
from jaxtl.models import layers, resnet
from jaxtl.runtime import log_versions

_BATCH = flags.DEFINE_integer("batch_size", 128, "Examples per step.")
_STEPS = flags.DEFINE_integer("steps", 10, "Steps per timed block.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Interleaved rounds; medians are reported.")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")

# name -> (the trainer's overrides, whether the frozen leading blocks are cached)
CASES = {
    "surgical_block1": (dict(timing.STRATEGIES["surgical_block1"]), False),
    "surgical_block2, cached prefix": (dict(timing.STRATEGIES["surgical_block2"]), True),
    "full": (dict(timing.STRATEGIES["full"]), False),
}


class NoNorm(nn.Module):
  """An identity in batch norm's place, with a batch-statistics leaf so that the trainer's
  state has the collection it expects."""

  @nn.compact
  def __call__(self, x):
    self.variable("batch_stats", "unused", jnp.zeros, ())
    return x


def unfolded(conv, train, name, x):
  """A batch norm after its convolution, as two operations (jaxtl before the fold)."""
  return layers.batch_norm(train, name)(conv(x))


def without_batch_norm(conv, train, name, x):
  """The convolution alone (not the same function)."""
  del train
  return NoNorm(name=name)(conv(x))


ARMS = {"unfolded": unfolded, "folded": layers.conv_bn, "no_batch_norm": without_batch_norm}


@contextlib.contextmanager
def conv_bn_as(fn):
  """ResNets built inside compute each convolution and its batch norm with `fn`."""
  saved = resnet.conv_bn
  resnet.conv_bn = fn
  try:
    yield
  finally:
    resnet.conv_bn = saved


def main(argv):
  del argv
  log_versions()
  cases = []
  for name, (overrides, cached) in CASES.items():
    overrides = dict(overrides, batch_norm="frozen")
    for arm, fn in ARMS.items():
      with conv_bn_as(fn):
        block, trainable = timing.prepare_strategy(overrides, _BATCH.value, 28, "xla", cached)
      cases.append(({"case": name, "arm": arm, "trainable_params": trainable}, block,
                    _STEPS.value))
  rows = timing.interleaved(cases, _REPEATS.value, unit="steps_per_second")
  results = {**timing.provenance("benchmarks.bn_fold"), "batch_size": _BATCH.value,
             "image_size": 28, "cases": {}}
  for name in CASES:
    arms = {r["arm"]: r for r in rows if r["case"] == name}
    rate = lambda arm, arms=arms: arms[arm]["steps_per_second"]
    results["cases"][name] = {
        **{arm: {"steps_per_second": r["steps_per_second"],
                 "range": r["steps_per_second_range"]} for arm, r in arms.items()},
        "speedup": rate("folded") / rate("unfolded"),
        "without_batch_norm": rate("no_batch_norm") / rate("unfolded")}
    c = results["cases"][name]
    print(f"{name}: " + ", ".join(f"{arm} {rate(arm):.1f}" for arm in ARMS)
          + f" steps/s; folded {c['speedup']:.3f}x, no batch norm "
          f"{c['without_batch_norm']:.3f}x the unfolded step")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
