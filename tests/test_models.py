import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtl.models import build_model, resnet
from jaxtl.models.layers import Conv, batch_norm, max_pool_2x2
from tests import reference


@pytest.mark.parametrize("name,kwargs,shape,out", [
    ("conv4", dict(num_classes=5), (3, 28, 28, 1), (3, 5)),
    ("conv4", dict(num_classes=5, downsample="maxpool", features=8), (2, 84, 84, 3), (2, 5)),
    ("conv4", dict(num_classes=0), (3, 28, 28, 1), (3, 256)),
    ("resnet", dict(num_classes=7, widths=(4, 8)), (2, 8, 8, 1), (2, 7)),
    ("mlp", dict(num_outputs=1), (4, 1), (4, 1)),
    ("mlp", dict(num_outputs=5, hidden=(16, 8), batch_norm=True), (4, 28, 28, 1), (4, 5)),
])
def test_shapes_and_named_blocks(name, kwargs, shape, out):
  model = build_model(name, **kwargs)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros(shape), train=False)
  assert model.apply(variables, jnp.ones(shape), train=False).shape == out
  assert tuple(variables["params"]) == model.block_names()


def test_conv4_feature_sizes_match_maml():
  # 28x28 with stride-2 convs -> 2x2x64 (MAML's code averages it to 64); 84x84 with max
  # pooling -> 5x5x64.
  for kwargs, shape, dim in [({}, (1, 28, 28, 1), 256), ({"pool": "mean"}, (1, 28, 28, 1), 64),
                             ({"downsample": "maxpool"}, (1, 84, 84, 3), 1600)]:
    model = build_model("conv4", num_classes=5, **kwargs)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros(shape))
    assert variables["params"]["head"]["kernel"].shape == (dim, 5)
  # MAML's N(0, 1) head kernel.
  model = build_model("conv4", num_classes=20, pool="mean", head_init_std=1.0)
  x = jnp.zeros((1, 28, 28, 1))
  kernel = model.init(jax.random.PRNGKey(0), x)["params"]["head"]["kernel"]
  assert abs(float(kernel.std()) - 1.0) < 0.05
  with pytest.raises(ValueError, match="valid: 'flatten', 'mean'"):
    build_model("conv4", num_classes=5, pool="max").init(jax.random.PRNGKey(0), x)


@pytest.mark.parametrize("kernel,stride,shape,padding", [
    ((3, 3), (2, 2), (2, 28, 28, 3), "SAME"), ((3, 3), (2, 2), (2, 7, 7, 3), "SAME"),
    ((3, 3), (1, 1), (2, 5, 6, 3), "SAME"), ((1, 1), (2, 2), (2, 7, 7, 3), "SAME"),
    # torch's symmetric padding (torchvision's ResNets), even and odd inputs
    ((3, 3), (2, 2), (2, 8, 8, 3), ((1, 1), (1, 1))), ((7, 7), (2, 2), (2, 9, 9, 3), ((3, 3), (3, 3)))])
def test_im2col_and_xla_convs_equal_flax_conv(kernel, stride, shape, padding):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  flax_conv = nn.Conv(4, kernel, stride, padding=padding)
  variables = flax_conv.init(jax.random.PRNGKey(1), x)
  for impl in ("xla", "im2col", "auto"):
    conv = Conv(4, kernel, stride, impl=impl, padding=padding)
    # Same parameter names, shapes and initial values: checkpoints move between them.
    same = jax.tree_util.tree_map(np.array_equal, conv.init(jax.random.PRNGKey(1), x), variables)
    assert all(jax.tree_util.tree_leaves(same))
    with reference.float64():  # the same function: equal up to float64 rounding
      x64, v64 = reference.to_float64(x), reference.to_float64(variables)
      np.testing.assert_allclose(conv.apply(v64, x64), flax_conv.apply(v64, x64), rtol=1e-12,
                                 atol=1e-12)
  with pytest.raises(ValueError,
                     match=r"Unknown conv 'cudnn'; valid: \['xla', 'im2col', 'auto', 'measured'\]"):
    Conv(4, impl="cudnn").init(jax.random.PRNGKey(1), x)


def test_fast_max_pool_equals_flax():
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 7, 6, 3))
  np.testing.assert_array_equal(max_pool_2x2(x), nn.max_pool(x, (2, 2), (2, 2)))


def test_batch_norm_modes():
  model = build_model("conv4", num_classes=3, features=4)
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 28, 28, 1))
  variables = model.init(jax.random.PRNGKey(0), x)
  # Running averages (train=False): an example's output does not depend on its batch.
  alone = model.apply(variables, x[:1], train=False)
  np.testing.assert_allclose(model.apply(variables, x, train=False)[:1], alone, atol=1e-5)
  # Batch statistics (train=True): it does, and running stats change only when mutable.
  out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert not np.allclose(out[:1], model.apply(variables, x[:2], train=True,
                                               mutable=["batch_stats"])[0][:1])
  assert not np.allclose(updates["batch_stats"]["block1"]["bn"]["mean"],
                         variables["batch_stats"]["block1"]["bn"]["mean"])


def test_batch_norm_folded_into_its_conv_is_the_same_function_and_gradient(monkeypatch):
  """Running statistics: `conv_bn` folds each batch norm into its convolution. The same
  variables (names, shapes, initial values) as a batch norm after its convolution, the
  same output and the same gradient for every parameter (float64, the two orders of
  rounding apart); batch statistics (train=True) never fold."""
  model = build_model("resnet", num_classes=5, widths=(4, 8))
  x = jax.random.uniform(jax.random.PRNGKey(0), (6, 12, 12, 1))
  folded = model.init(jax.random.PRNGKey(1), x, train=False)

  def unfolded(conv, train, name, x):
    return batch_norm(train, name)(conv(x))
  with monkeypatch.context() as m:
    m.setattr(resnet, "conv_bn", unfolded)
    separate = model.init(jax.random.PRNGKey(1), x, train=False)
    trained = model.init(jax.random.PRNGKey(1), x, train=True)
  for tree in (separate, trained):
    assert jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(folded)
    assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda a, b: a.dtype == b.dtype and np.array_equal(a, b), tree, folded)))
  # Statistics and affine parameters away from their initial 0 and 1, of order one.
  keys = iter(jax.random.split(jax.random.PRNGKey(2), 100))
  variables = jax.tree_util.tree_map_with_path(
      lambda path, a: a if "kernel" in jax.tree_util.keystr(path)
      else a + jax.random.uniform(next(keys), a.shape, a.dtype, -0.5, 0.5), folded)

  def loss_and_grad(conv_bn):
    with monkeypatch.context() as m, reference.float64():
      m.setattr(resnet, "conv_bn", conv_bn)
      v64, x64 = reference.to_float64(variables), reference.to_float64(x)
      loss = lambda p: jnp.sum(jnp.sin(model.apply({**v64, "params": p}, x64, train=False)))
      return jax.value_and_grad(loss)(v64["params"])
  got, want = loss_and_grad(resnet.conv_bn), loss_and_grad(unfolded)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-10)
  scale = max(np.abs(np.asarray(g)).max() for g in jax.tree_util.tree_leaves(want[1]))
  for g, w in zip(jax.tree_util.tree_leaves(got[1]), jax.tree_util.tree_leaves(want[1])):
    np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10 * scale)
  # train=True normalises with the batch: the output depends on the other examples.
  out = model.apply(folded, x, train=True, mutable=["batch_stats"])[0]
  assert not np.allclose(out[:1], model.apply(folded, x[:2], train=True,
                                              mutable=["batch_stats"])[0][:1])


def test_unknown_model_lists_valid_names():
  with pytest.raises(ValueError, match="valid models"):
    build_model("vit", num_classes=2)
