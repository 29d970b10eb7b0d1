"""PyTorch peers for `benchmarks.step_throughput`: a fine-tuning step on the transfer
experiments' ResNet and a sinusoid MAML meta-step, as a PyTorch user writes them.

  * `ResNet`: jaxtl's `jaxtl.models.resnet.ResNet` in `torch.nn` (stem conv, one basic
    block per stage of widths 16, 32, 64, strides 1, 2, 2, a 1x1 projection where the
    shape changes, batch norm on the batch's statistics, global mean pool, linear head).
    One step: forward, cross-entropy, backward, Adam. `linear_probe` trains the head
    only: the body's parameters do not require gradients, so autograd skips their
    backward, as jax.grad does for the frozen leaves.
  * sinusoid MAML: MLP 1-40-40-1 (ReLU), one inner SGD step on the support MSE,
    `torch.func.grad` through it, `vmap` over the meta-batch, Adam on the query MSE;
    tasks drawn in torch inside the step, as jaxtl draws them inside its jitted step.
`compiled=True` wraps the step's computation in `torch.compile`.
"""
import time

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.torch_peers import DEVICE, sync


class BasicBlock(nn.Module):
  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.proj = None
    if cin != cout or stride != 1:
      self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                nn.BatchNorm2d(cout))

  def forward(self, x):
    y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu((x if self.proj is None else self.proj(x)) + y)


class ResNet(nn.Module):
  def __init__(self, num_classes: int = 10, widths=(16, 32, 64)):
    super().__init__()
    self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, 1, 1, bias=False),
                              nn.BatchNorm2d(widths[0]), nn.ReLU())
    blocks, cin = [], widths[0]
    for i, width in enumerate(widths):
      blocks.append(BasicBlock(cin, width, 1 if i == 0 else 2))
      cin = width
    self.blocks = nn.Sequential(*blocks)
    self.head = nn.Linear(cin, num_classes)

  def forward(self, x):
    return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def finetune_step(strategy: str, batch_size: int, image_size: int = 28, lr: float = 1e-3,
                  compiled: bool = False):
  """block(calls) -> steps per second of one `strategy` step: full, linear_probe or
  surgical_blockK (block K alone: its convolutions and batch norms, as jaxtl's surgical
  strategy trains), the frozen parameters with requires_grad off, the model in train()
  mode as its users run it."""
  torch.manual_seed(0)
  model = ResNet().to(DEVICE).train()
  prefixes = {"linear_probe": "head.", **{f"surgical_block{k + 1}": f"blocks.{k}."
                                          for k in range(len(model.blocks))}}
  if strategy in prefixes:
    for name, p in model.named_parameters():
      p.requires_grad_(name.startswith(prefixes[strategy]))
  elif strategy != "full":
    raise ValueError(f"Unknown strategy {strategy!r}; valid: full, {', '.join(prefixes)}.")
  opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
  x = torch.rand(batch_size, 1, image_size, image_size, device=DEVICE)
  y = torch.arange(batch_size, device=DEVICE) % 10

  def loss_and_backward():
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss
  compute = torch.compile(loss_and_backward) if compiled else loss_and_backward

  def step():
    opt.zero_grad(set_to_none=True)
    compute()
    opt.step()
  return _blocks(step)


def mlp(p: dict, x):
  """The sinusoid MLP: w0, b0 ... w2, b2 (torch's (out, in) layout), ReLU between."""
  layers = len(p) // 2
  for i in range(layers):
    x = F.linear(x, p[f"w{i}"], p[f"b{i}"])
    x = F.relu(x) if i < layers - 1 else x
  return x


def sinusoid_meta_gradient(p: dict, x, y, shot: int, inner_lr: float) -> dict:
  """Gradient of the mean query MSE after one inner SGD step on each task's first
  `shot` points (second order), vmapped over the tasks of x, y: (tasks, points, 1)."""
  mse = lambda p, x, y: torch.mean((mlp(p, x) - y) ** 2)

  def task_loss(p, sx, sy, qx, qy):
    grads = torch.func.grad(mse)(p, sx, sy)
    return mse({k: p[k] - inner_lr * grads[k] for k in p}, qx, qy)

  losses = lambda p: torch.func.vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(
      p, x[:, :shot], y[:, :shot], x[:, shot:], y[:, shot:]).mean()
  return torch.func.grad(losses)(p)


def sinusoid_meta_step(tasks: int, shot: int, query: int, inner_lr: float,
                       meta_lr: float = 1e-3, compiled: bool = False):
  """block(calls) -> meta-iterations per second of second-order sinusoid MAML."""
  gen = torch.Generator(device=DEVICE).manual_seed(0)
  params = {}
  for i, (cin, cout) in enumerate([(1, 40), (40, 40), (40, 1)]):
    params[f"w{i}"] = (torch.randn(cout, cin, generator=gen, device=DEVICE)
                       * (2 / cin) ** 0.5).requires_grad_()
    params[f"b{i}"] = torch.zeros(cout, device=DEVICE, requires_grad=True)
  opt = torch.optim.Adam(params.values(), lr=meta_lr)
  gradient = lambda p, x, y: sinusoid_meta_gradient(p, x, y, shot, inner_lr)
  gradient = torch.compile(gradient) if compiled else gradient

  def step():
    amplitude = 0.1 + 4.9 * torch.rand(tasks, 1, 1, generator=gen, device=DEVICE)
    phase = torch.pi * torch.rand(tasks, 1, 1, generator=gen, device=DEVICE)
    x = -5 + 10 * torch.rand(tasks, shot + query, 1, generator=gen, device=DEVICE)
    grads = gradient({k: v.detach() for k, v in params.items()}, x,
                     amplitude * torch.sin(x - phase))
    for k, v in params.items():
      v.grad = grads[k]
    opt.step()
  return _blocks(step)


def _blocks(step):
  """block(calls) -> calls per second of `step`, after a warm-up call (compiles)."""
  step()
  sync()

  def block(calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
      step()
    sync()
    return calls / (time.perf_counter() - t0)
  return block
