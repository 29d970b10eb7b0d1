"""What bounds the ResNet fine-tuning step on CPU: each of its convolutions, forward and
forward + backward (gradients of input and kernel), jaxtl's kernels against PyTorch's,
interleaved in one run.

    python -m benchmarks.conv_cost [--batch_size=128] [--out=FILE.json]

The shapes are those of the transfer experiments' ResNet (widths 16, 32, 64, one unit
per stage) on 28x28x1 images; `count` is how often each occurs in one forward pass.
The sums over the shapes, weighted by `count`, are the convolutions' share of a step
(`benchmarks.step_throughput` times the whole step).
"""
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks.timing import provenance
from jaxtl.models.layers import im2col_conv
from jaxtl.runtime import log_versions

_BATCH = flags.DEFINE_integer("batch_size", 128, "Images per batch.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved rounds; the median is reported.")
_CALLS = flags.DEFINE_integer("calls", 10, "Calls per timed block.")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")

# (input height = width, in channels, out channels, kernel, stride, count per forward pass)
SHAPES = ((28, 1, 16, 3, 1, 1), (28, 16, 16, 3, 1, 2), (28, 16, 32, 3, 2, 1),
          (28, 16, 32, 1, 2, 1), (14, 32, 32, 3, 1, 1), (14, 32, 64, 3, 2, 1),
          (14, 32, 64, 1, 2, 1), (7, 64, 64, 3, 1, 1))


def _timer(fn, *args):
  """block(calls) -> milliseconds per call of jitted / eager `fn`, warmed up."""
  def block(calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
      out = fn(*args)
    jax.block_until_ready(out)  # PyTorch's cases return Python floats: already done
    return 1e3 * (time.perf_counter() - t0) / calls
  block(2)
  return block


def jax_cases(batch, size, cin, cout, k, stride):
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, cin))
  w = jax.random.normal(jax.random.PRNGKey(1), (k, k, cin, cout))
  convs = {"jax xla": lambda x, w: jax.lax.conv_general_dilated(
               x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")),
           "jax im2col": lambda x, w: im2col_conv(x, w, (stride, stride))}
  out = {}
  for name, conv in convs.items():
    out[name, "forward"] = _timer(jax.jit(conv), x, w)
    both = jax.jit(jax.grad(lambda x, w, conv=conv: jnp.sum(conv(x, w) ** 2), argnums=(0, 1)))
    out[name, "forward + backward"] = _timer(both, x, w)
  return out


def torch_cases(batch, size, cin, cout, k, stride):
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  x = torch.randn(batch, cin, size, size, requires_grad=True)
  w = torch.randn(cout, cin, k, k, requires_grad=True)
  conv = lambda: F.conv2d(x, w, stride=stride, padding=k // 2)

  def forward():
    with torch.no_grad():
      return conv().sum().item()

  def both():
    return torch.autograd.grad((conv() ** 2).sum(), (x, w))[0][0, 0, 0, 0].item()
  return {("PyTorch", "forward"): _timer(forward), ("PyTorch", "forward + backward"): _timer(both)}


def main(argv):
  del argv
  log_versions()
  cases = {}
  for shape in SHAPES:
    size, cin, cout, k, stride, _ = shape
    timed = jax_cases(_BATCH.value, size, cin, cout, k, stride)
    try:
      timed.update(torch_cases(_BATCH.value, size, cin, cout, k, stride))
    except ImportError:
      pass
    cases.update({(shape, *key): block for key, block in timed.items()})
  times = {key: [] for key in cases}
  for _ in range(_REPEATS.value):  # interleaved rounds
    for key, block in cases.items():
      times[key].append(block(_CALLS.value))
  rows = [{"input": size, "in": cin, "out": cout, "kernel": k, "stride": stride,
           "count": count, "method": method, "pass": what, "ms": float(np.median(t)),
           "ms_range": [float(min(t)), float(max(t))]}
          for ((size, cin, cout, k, stride, count), method, what), t in times.items()]
  print("| shape | method | pass | ms |\n|---|---|---|---:|")
  for r in rows:
    print(f"| {r['input']}x{r['input']}x{r['in']} -> {r['out']}, {r['kernel']}x{r['kernel']}/"
          f"{r['stride']} | {r['method']} | {r['pass']} | {r['ms']:.2f} |")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump({"batch_size": _BATCH.value, **provenance("benchmarks.conv_cost"),
                 "results": rows}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
