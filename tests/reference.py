"""float32 results against a float64 reference, with tolerances derived from it.

A float32 path that computes the same function as the reference differs from it by
rounding only. On well-conditioned inputs (random images, not constant ones, so that
batch-norm variances are of order one) that error is a modest multiple of float32's
machine epsilon (1.2e-7) times the result's scale: `F32_RTOL` = 1e-4 of the scale is
about 800 epsilons, room for any CPU's summation order, vector width and threading,
while a wrong computation (a missing term, a dropped `stop_gradient`, a frozen leaf that
moved) is off by a sizeable fraction of the scale. The scale is the largest magnitude
in the reference tree, so leaves whose true value is zero (conv biases before batch
norm) are compared at the tree's scale, not their own.
"""
import contextlib

import jax
import jax.numpy as jnp
import numpy as np

F32_RTOL = 1e-4


def to_float64(tree):
  """Floating leaves as float64 (call inside `float64()`); others unchanged."""
  return jax.tree_util.tree_map(
      lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(jnp.asarray(a).dtype,
                                                              jnp.floating) else a, tree)


@contextlib.contextmanager
def float64():
  """jax_enable_x64 for the block (the reference), restored after."""
  if hasattr(jax, "enable_x64"):  # jax >= 0.7; before, jax.experimental.enable_x64
    context = jax.enable_x64(True)
  else:
    context = jax.experimental.enable_x64()  # pylint: disable=no-member
  with context:
    yield


def relative_error(got, reference) -> float:
  """max |got - reference| / max |reference| over all leaves of the two trees."""
  got = [np.asarray(a, np.float64) for a in jax.tree_util.tree_leaves(got)]
  ref = [np.asarray(a, np.float64) for a in jax.tree_util.tree_leaves(reference)]
  assert len(got) == len(ref) and all(g.shape == r.shape for g, r in zip(got, ref))
  scale = max(float(np.abs(r).max()) for r in ref)
  assert scale > 0, "an all-zero reference cannot set a scale"
  return max(float(np.abs(g - r).max()) for g, r in zip(got, ref)) / scale


def assert_close(got, reference, rtol: float = F32_RTOL, what: str = ""):
  error = relative_error(got, reference)
  assert error <= rtol, f"{what}: error {error:.2e} of the reference's scale > {rtol:.0e}"
