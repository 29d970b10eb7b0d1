"""PyTorch peers for `benchmarks.maml_throughput`: the same second-order MAML step.

The ways users write MAML in PyTorch, on MAML's Omniglot 4-conv net (3x3 convs with
stride 2, batch norm on the batch's statistics, ReLU, a linear head):
  * `torch.func`: a functional net, `torch.func.grad` for the inner loop and `vmap`
    over the tasks of a meta-batch (per-task weights make its convs grouped ones);
    `torch.func unfold`: the same with each conv as patches @ kernel (`F.unfold`), as
    a user tuning for CPU would write it (and as jaxtl does on CPU); `torch.func unfold
    compiled`: that under `torch.compile`. Each variant's meta-gradient is checked
    against the plain `torch.func` one before it is timed.
  * the learn2learn method: clone the weights and adapt one task at a time with
    `torch.autograd.grad(create_graph=True)`, calling `backward()` per task (what
    learn2learn's `MAML.clone()` / `adapt()` do); learn2learn itself where it imports.
PyTorch is an optional extra (`pip install -e '.[peers]'`), never a jaxtl dependency.
Runs on the GPU when PyTorch sees one, else on the CPU.
"""
import time

import torch
import torch.nn.functional as F

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync():
  if DEVICE.type == "cuda":
    torch.cuda.synchronize()


def init_params(way: int, features: int = 64, seed: int = 0) -> dict:
  gen = torch.Generator().manual_seed(seed)
  params, cin = {}, 1
  for i in range(1, 5):
    params[f"w{i}"] = torch.randn(features, cin, 3, 3, generator=gen) * (2 / (9 * cin)) ** 0.5
    params[f"b{i}"] = torch.zeros(features)
    params[f"s{i}"] = torch.ones(features)   # batch-norm scale and offset: not adapted
    params[f"o{i}"] = torch.zeros(features)
    cin = features
  params["wh"] = torch.randn(way, features * 4, generator=gen) * (1 / (features * 4)) ** 0.5
  params["bh"] = torch.zeros(way)
  return {k: v.to(DEVICE).requires_grad_() for k, v in params.items()}


ADAPTED = ("w1", "b1", "w2", "b2", "w3", "b3", "w4", "b4", "wh", "bh")


def conv_unfold(x, w, b, stride: int, padding: int):
  """F.conv2d as patches @ kernel (im2col, what jaxtl's `conv="im2col"` does): under
  vmap with per-task weights a batched matrix product, not a grouped convolution."""
  n, _, h, width = x.shape
  k = w.shape[-1]
  cols = F.unfold(x, k, padding=padding, stride=stride)  # (n, cin * k * k, positions)
  out = w.flatten(1) @ cols + b[:, None]
  size = lambda d: (d + 2 * padding - k) // stride + 1
  return out.view(n, w.shape[0], size(h), size(width))


def forward(params: dict, x: torch.Tensor, conv=F.conv2d) -> torch.Tensor:
  for i in range(1, 5):
    x = conv(x, params[f"w{i}"], params[f"b{i}"], stride=2, padding=1)
    x = F.relu(F.batch_norm(x, None, None, params[f"s{i}"], params[f"o{i}"], training=True))
  return F.linear(x.flatten(1), params["wh"], params["bh"])


def loss_fn(params, x, y, conv=F.conv2d):
  return F.cross_entropy(forward(params, x, conv), y)


def adapt_func(params, x, y, steps, alpha, conv=F.conv2d):
  for _ in range(steps):
    fast = {k: params[k] for k in ADAPTED}
    grads = torch.func.grad(lambda f: loss_fn({**params, **f}, x, y, conv))(fast)
    params = {**params, **{k: fast[k] - alpha * grads[k] for k in ADAPTED}}
  return params


def torch_func_meta_gradient(conv=F.conv2d, compiled: bool = False):
  """grads(params, sx, sy, qx, qy, steps, alpha): the meta-gradient, vmapped over tasks,
  second order through torch.func.grad; optionally under torch.compile."""
  def meta_gradient(params, sx, sy, qx, qy, steps, alpha):
    def task_loss(p, sx, sy, qx, qy):
      return loss_fn(adapt_func(p, sx, sy, steps, alpha, conv), qx, qy, conv)

    def meta_loss(p, sx, sy, qx, qy):
      return torch.func.vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(p, sx, sy, qx, qy).mean()
    return torch.func.grad(meta_loss)(params, sx, sy, qx, qy)
  return torch.compile(meta_gradient, dynamic=False) if compiled else meta_gradient


def make_torch_func_step(params, steps, alpha, conv=F.conv2d, compiled: bool = False):
  """One meta-iteration: vmap over tasks, second-order through torch.func.grad."""
  opt = torch.optim.Adam(params.values(), lr=1e-3)
  meta_gradient = torch_func_meta_gradient(conv, compiled)

  def step(batch):
    grads = meta_gradient(params, *batch, steps, alpha)
    for k, g in grads.items():
      params[k].grad = g
    opt.step()
  return step


def check_same_meta_gradient(way: int, shot: int, steps: int, alpha: float,
                             conv=conv_unfold, compiled: bool = False, rtol: float = 1e-3):
  """A peer variant must compute the reference peer's meta-gradient (F.conv2d, eager)
  before it is timed: relative error over all leaves, at float32 rounding (eager unfold:
  1e-6 to 1e-4). torch 2.14's inductor reorders the second-order backward's float32
  arithmetic further (seen: 2.1e-3 on 5w1s), so `prepare` allows it 1e-2."""
  params = {k: v.detach() for k, v in init_params(way).items()}
  batch = random_batch(2, way, shot, shot, seed=1)
  ref = torch_func_meta_gradient()(params, *batch, steps, alpha)
  got = torch_func_meta_gradient(conv, compiled)(params, *batch, steps, alpha)
  scale = max(float(g.abs().max()) for g in ref.values())
  error = max(float((got[k] - ref[k]).abs().max()) for k in ref) / scale
  if not error <= rtol:
    raise AssertionError(f"meta-gradient off by {error:.1e} of the eager torch.func "
                         f"peer's largest entry (allowed: {rtol:g})")
  return error


def make_learn2learn_method_step(params, steps, alpha):
  """One meta-iteration: clone, adapt and backward one task at a time."""
  opt = torch.optim.Adam(params.values(), lr=1e-3)

  def step(batch):
    sx, sy, qx, qy = batch
    opt.zero_grad()
    tasks = sx.shape[0]
    for t in range(tasks):
      fast = dict(params)
      for _ in range(steps):
        grads = torch.autograd.grad(loss_fn(fast, sx[t], sy[t]), [fast[k] for k in ADAPTED],
                                    create_graph=True)
        fast.update({k: fast[k] - alpha * g for k, g in zip(ADAPTED, grads)})
      (loss_fn(fast, qx[t], qy[t]) / tasks).backward()
    opt.step()
  return step


def make_learn2learn_step(params, steps, alpha, way):
  """learn2learn 0.2's own MAML wrapper (raises ImportError where it does not install)."""
  try:
    import learn2learn as l2l  # pylint: disable=import-outside-toplevel
  except Exception as e:  # a missing package, or one built against another torch
    raise ImportError(f"learn2learn does not import here ({type(e).__name__}: {e})") from e

  class Net(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.p = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone())
                                       for k, v in params.items()})

    def forward(self, x):
      return forward(dict(self.p), x)

  maml = l2l.algorithms.MAML(Net(), lr=alpha, first_order=False)
  opt = torch.optim.Adam(maml.parameters(), lr=1e-3)

  def step(batch):
    sx, sy, qx, qy = batch
    opt.zero_grad()
    for t in range(sx.shape[0]):
      learner = maml.clone()
      for _ in range(steps):
        learner.adapt(F.cross_entropy(learner(sx[t]), sy[t]))
      (F.cross_entropy(learner(qx[t]), qy[t]) / sx.shape[0]).backward()
    opt.step()
  return step


def random_batch(tasks, way, shot, query, seed=0):
  gen = torch.Generator().manual_seed(seed)
  labels = lambda k: torch.arange(way).repeat_interleave(k).repeat(tasks, 1)
  batch = (torch.rand(tasks, way * shot, 1, 28, 28, generator=gen), labels(shot),
           torch.rand(tasks, way * query, 1, 28, 28, generator=gen), labels(query))
  return tuple(t.to(DEVICE) for t in batch)


def prepare(method: str, way: int, shot: int, tasks: int, steps: int, alpha: float):
  """(block, check): block(calls) -> meta-iterations per second of `method` over `calls`
  iterations, after a warm-up iteration; check: a variant's meta-gradient error
  relative to the plain torch.func peer's (None for the others)."""
  params = init_params(way)
  makers = {"torch.func": lambda: make_torch_func_step(params, steps, alpha),
            "torch.func unfold": lambda: make_torch_func_step(params, steps, alpha,
                                                              conv_unfold),
            "torch.func unfold compiled": lambda: make_torch_func_step(
                params, steps, alpha, conv_unfold, compiled=True),
            "learn2learn method": lambda: make_learn2learn_method_step(params, steps, alpha),
            "learn2learn": lambda: make_learn2learn_step(params, steps, alpha, way)}
  if method.startswith("torch.func "):  # a variant: the reference's numbers first
    compiled = "compiled" in method
    check = check_same_meta_gradient(way, shot, steps, alpha, conv_unfold, compiled,
                                     rtol=1e-2 if compiled else 1e-3)
  else:
    check = None
  step = makers[method]()
  batch = random_batch(tasks, way, shot, shot)
  step(batch)  # warm-up
  sync()

  def block(calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
      step(batch)
    sync()
    return calls / (time.perf_counter() - t0)
  return block, check

