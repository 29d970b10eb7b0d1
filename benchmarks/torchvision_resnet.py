"""torchvision's ResNets in jaxtl at full size: the import checked, then fine-tuning steps
timed side by side with PyTorch in one run.

    python -m benchmarks.torchvision_resnet [--out=FILE.json] [--batch_size=32]
        [--image_size=224] [--repeats=3]

  * Check: `torchvision.models.resnet18()` and `resnet50()` (weights=None: torchvision's
    own random initialisation, its batch-norm running statistics then drawn at random),
    saved by `torch.save`, read by `jaxtl.state_dict` into `TorchResNet`; the largest
    logit difference over the largest logit, in float64 on both sides, eval mode
    (the CI suite checks narrow fixtures the same way: tests/test_torchvision.py).
  * Steps (ResNet-18, `--image_size` and 64x64, random images, 10 classes, Adam, batch
    norm frozen as finetune.py:torchvision fine-tunes): `full` trains everything, jaxtl
    with either convolution kernel (`jaxtl.models.layers`); `block4` trains
    layer4 and fc (surgical fine-tuning's last block), PyTorch with the other
    parameters' requires_grad off, jaxtl with the trainer's partition; `block4, cached
    prefix` is jaxtl's grid path (`jaxtl.finetune.grid.prefix_features`): blocks 1-3
    run once per image before training, each step runs layer4 and fc only; the one-off
    cost of that prefix is its own row (batches of `--batch_size` images per second).
Rates are steps per second: median and range over `--repeats` interleaved rounds
(`benchmarks.timing.interleaved`). Needs torch and torchvision (`pip install -e
'.[peers]'`).
"""
import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from benchmarks.timing import interleaved, provenance, ratio_lines, stepping, timed
from jaxtl import checkpoint, partition
from jaxtl.finetune import grid
from jaxtl.models import build_model
from jaxtl.runtime import log_versions
from tests import reference

_BATCH = flags.DEFINE_integer("batch_size", 32, "Images per step.")
_SIZE = flags.DEFINE_integer("image_size", 224, "Image side.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved rounds; median and range reported.")
_CALLS = flags.DEFINE_integer("calls", 2, "Steps per timed block.")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")


def torchvision_net(depth: int, seed: int = 0):
  import torch  # pylint: disable=import-outside-toplevel
  import torchvision  # pylint: disable=import-outside-toplevel
  torch.manual_seed(seed)
  net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
  for m in net.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.weight.data.uniform_(0.5, 1.5)
      m.bias.data.normal_(0, 0.1)
      m.running_mean.normal_(0, 0.1)
      m.running_var.uniform_(0.5, 1.5)
  return net


def imported(net, depth: int, num_classes: int, reinit=()):
  """(model, variables): `net`'s state dict through a .pth file into TorchResNet."""
  import torch  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, f"resnet{depth}.pth")
    torch.save(net.state_dict(), path)
    model = build_model(f"torchvision_resnet{depth}", num_classes=num_classes, image_size=0,
                        normalize=False)
    fresh = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)), train=False)
    variables, _ = checkpoint.load_pretrained(fresh, checkpoint.load_variables(path), reinit,
                                              strict=not reinit)
  return model, variables


def check(depth: int) -> float:
  import torch  # pylint: disable=import-outside-toplevel
  net = torchvision_net(depth).double().eval()
  x = np.random.default_rng(0).normal(size=(2, 3, _SIZE.value, _SIZE.value))
  with torch.no_grad():
    want = net(torch.tensor(x)).numpy()
  model, variables = imported(net.float(), depth, 1000)
  with reference.float64():
    got = model.apply(reference.to_float64(variables), jnp.asarray(x.transpose(0, 2, 3, 1)),
                      train=False)
  return float(np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want)))


def jaxtl_step(model, variables, trainable_blocks, x, y, start: int = 0):
  """One Adam step on the blocks `trainable_blocks` (None: all), batch norm frozen, on
  inputs `x` of block `start`; block(calls) -> steps per second."""
  labels = jax.tree_util.tree_map_with_path(
      lambda p, _: "train" if trainable_blocks is None or p[0].key in trainable_blocks else None,
      variables["params"])
  keep = lambda l: l is not None
  trainable, frozen = partition.split(variables["params"], labels, keep)
  tx = optax.adam(1e-4)

  @jax.jit
  def step(state, frozen, stats, x, y):
    def loss(t):
      params = partition.merge(t, frozen)
      logits = model.apply({"params": params, "batch_stats": stats}, x, train=False,
                           start=start)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    value, grads = jax.value_and_grad(loss)(state["t"])
    updates, opt = tx.update(grads, state["opt"], state["t"])
    return {"t": optax.apply_updates(state["t"], updates), "opt": opt}, value

  state = {"t": trainable, "opt": tx.init(trainable)}
  block = timed(stepping(step, state, (frozen, variables["batch_stats"], x, y)))
  block(1)  # compiles
  return block


def torch_step(net, trainable_blocks, x, y):
  import copy  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  net = copy.deepcopy(net).eval()  # running statistics, as batch_norm="frozen"
  for name, p in net.named_parameters():
    p.requires_grad_(trainable_blocks is None or name.split(".")[0] in trainable_blocks)
  opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
  x = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2)).contiguous()
  y = torch.tensor(np.asarray(y), dtype=torch.long)

  def block(calls):
    t0 = time.perf_counter()
    for _ in range(calls):
      opt.zero_grad(set_to_none=True)
      torch.nn.functional.cross_entropy(net(x), y).backward()
      opt.step()
    return calls / (time.perf_counter() - t0)
  block(1)
  return block


def step_cases(size: int, batch: int, block4: bool):
  """(row, block) pairs at one image size: the full step with jaxtl's two convolution
  kernels and PyTorch's; with `block4`, the last-block step three ways and the prefix."""
  import torch  # pylint: disable=import-outside-toplevel
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, 3))
  y = jnp.arange(batch) % 10
  net = torchvision_net(18)
  net.fc = torch.nn.Linear(512, 10)
  model, variables = imported(net, 18, 10, reinit=(r"^head/",))
  case = lambda what: f"{what} (ResNet-18, {size}x{size}, batch {batch})"
  cases = [({"case": case("full"), "method": f"jaxtl (conv={conv})"},
            jaxtl_step(model.clone(conv=conv), variables, None, x, y))
           for conv in ("auto", "xla")]
  cases.append(({"case": case("full"), "method": "PyTorch"}, torch_step(net, None, x, y)))
  if block4:
    tail = ("block4", "head")
    feats = grid.prefix_features(model, variables, x, stop=3)
    prefix = timed(lambda: grid.prefix_features(model, variables, x, stop=3))
    prefix(1)
    cases += [
        ({"case": case("block4"), "method": "jaxtl"}, jaxtl_step(model, variables, tail, x, y)),
        ({"case": case("block4"), "method": "jaxtl, cached prefix"},
         jaxtl_step(model, variables, tail, feats, y, start=3)),
        ({"case": case("block4"), "method": "PyTorch"},
         torch_step(net, ("layer4", "fc"), x, y)),
        ({"case": case("blocks 1-3 once, the cached prefix"), "method": "jaxtl"}, prefix)]
  return cases


def main(_):
  log_versions()
  checks = {f"torchvision resnet{d} logits, float64, rel error": check(d) for d in (18, 50)}
  print(checks)
  b, s = _BATCH.value, _SIZE.value
  cases = step_cases(s, b, block4=True) + step_cases(64, b, block4=False)
  rows = interleaved([(row, block, _CALLS.value) for row, block in cases], _REPEATS.value,
                     unit="per_second")
  for r in rows:
    print(f"{r['case']:55s} {r['method']:22s} {r['per_second']:7.2f} per second")
  print("\n".join(ratio_lines(rows, "case", "per_second")))
  result = {**provenance("benchmarks.torchvision_resnet"), "results": rows, "checks": checks,
            "batch_size": b, "image_size": s}
  result["versions"]["torchvision"] = __import__("torchvision").__version__
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  app.run(main)
