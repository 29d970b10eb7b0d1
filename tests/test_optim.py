"""One optimiser factory (`jaxtl.finetune.optim`): each field means what the module docstring says
(closed forms in float64), and the trainer and the grid take the same step with it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import finetune as finetune_configs
from jaxtl import partition
from jaxtl.finetune import optim
from jaxtl.errors import ConfigError
from jaxtl.finetune import grid, strategies, trainer
from jaxtl.models import build_model
from tests import reference

B1, B2, EPS = 0.9, 0.999, 1e-8


def _numpy_steps(name, w, grads, lr, wd, momentum):
  """Two steps of torch's Adam / AdamW / SGD, written out in float64."""
  m = v = buf = 0.0
  for t, g in enumerate(grads, start=1):
    if name in ("adam", "sgd"):
      g = g + wd * w  # L2: into the gradient
    if name == "sgd":
      buf = g if t == 1 else momentum * buf + g
      w = w - lr * buf
      continue
    m = B1 * m + (1 - B1) * g
    v = B2 * v + (1 - B2) * g * g
    step = (m / (1 - B1 ** t)) / (np.sqrt(v / (1 - B2 ** t)) + EPS)
    w = w - lr * step - (lr * wd * w if name == "adamw" else 0.0)  # decoupled
  return w


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_each_optimizer_is_its_torch_closed_form(name):
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(3, 4))
  grads = [rng.normal(size=(3, 4)) for _ in range(2)]
  lr, wd, momentum, scale = 0.1, 0.3, 0.9, 0.5
  with reference.float64():
    tx = optim.make(name, lr, wd, momentum if name == "sgd" else 0.0,
                    scales={"w": jnp.float64(scale)})
    params = {"w": jnp.asarray(w0)}
    state = tx.init(params)
    for g in grads:
      updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
      params = {"w": params["w"] + updates["w"]}
    got = np.asarray(params["w"])
  # A scale multiplies the update: the same as that leaf's learning rate times the scale
  # for Adam and SGD; for AdamW the decoupled decay is scaled with it, as torch's per-group lr.
  want = _numpy_steps(name, w0, grads, lr * scale, wd, momentum)
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_unknown_optimizer_is_named_with_the_valid_ones():
  with pytest.raises(ConfigError, match="'adamx'.*adam"):
    optim.make("adamx", 1e-3)


def test_trainer_and_grid_take_the_same_step():
  """Full batch (so the order of examples cannot matter), Adam with L2, one step each."""
  model = build_model("resnet", num_classes=3, widths=(4, 4, 8, 8))
  rng = np.random.default_rng(0)
  images = rng.random((8, 8, 8, 1))
  labels = rng.integers(0, 3, 8).astype(np.int32)
  config = finetune_configs.get_config("quick")
  config.update(strategy="full", num_steps=1, batch_size=8, learning_rate=1e-2,
                weight_decay=1e-2, batch_norm="frozen", optimizer="adam")
  with reference.float64():
    variables = reference.to_float64(model.init(jax.random.PRNGKey(1), images[:1], train=False))
    x = jnp.asarray(images)
    phase = strategies.phases(config, model.block_names())[0]
    table = partition.label_params(variables["params"], phase.table)
    trainable, _ = partition.split(table, table, lambda l: l is not None)
    tx = trainer.make_optimizer(config, trainable)
    step = trainer.make_train_step(model, tx, table, config, 8, 8)
    copy = lambda t: jax.tree_util.tree_map(jnp.copy, t)  # the step donates its state
    state = dict(step=jnp.zeros((), jnp.int32), params=copy(variables["params"]),
                 batch_stats=copy(variables["batch_stats"]), opt_state=tx.init(variables["params"]))
    state, _ = step(state, {}, x, jnp.asarray(labels), jnp.arange(8))
    spec = grid.spec_from_config(config, model.block_names())
    train = grid.make_train_fn(model, spec, 8)
    out = jax.jit(train)(variables, x, jnp.asarray(labels), x[:1], 1e-2, 1e-2, 0,
                         jnp.arange(8))
    delta = lambda p: jax.tree_util.tree_map(lambda a, b: a - b, p, variables["params"])
    reference.assert_close(delta(out["params"]), delta(state["params"]), rtol=1e-9,
                           what="grid vs trainer update")


def test_grid_refuses_what_it_cannot_honour():
  config = finetune_configs.get_config("quick")
  for field, value, match in (("strategy", "l2sp", "l2sp"), ("objective", "rotation", "rotation")):
    c = config.copy_and_resolve_references()
    c[field] = value
    with pytest.raises(ConfigError, match=match):
      grid.spec_from_config(c, ("block1", "block2", "block3", "head"))


def test_multitask_refuses_a_strategy_it_cannot_honour(tmp_path):
  from jaxtl.finetune import multitask  # pylint: disable=import-outside-toplevel
  config = finetune_configs.get_config("quick")
  config.strategy = "linear_probe"
  with pytest.raises(ConfigError, match="linear_probe"):
    multitask.train_and_evaluate_multitask(config, str(tmp_path), data=[])
  assert not any(tmp_path.iterdir())
