"""`conv="measured"` (jaxtl.models.conv_choice): per convolution shape the kernel measured
faster on this machine, timed once, kept on disk per machine, and the same function as
either kernel."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtl.models import build_model, conv_choice, layers


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXTL_CACHE_DIR", str(tmp_path))
  return tmp_path


def test_the_faster_kernel_is_chosen_measured_once_and_kept_per_machine(cache_dir):
  calls = []

  def measure():
    calls.append(1)
    return {"xla": 3.0, "im2col": 1.0}
  assert conv_choice.choose("shape A", measure) == "im2col"
  assert conv_choice.choose("shape A", measure) == "im2col" and len(calls) == 1
  saved = json.loads((cache_dir / "conv_choice.json").read_text())
  assert saved[conv_choice.machine()]["shape A"] == {"choice": "im2col",
                                                     "ms": {"xla": 3.0, "im2col": 1.0}}
  # Another process on this machine reads the table instead of measuring.
  conv_choice._LOADED.clear()  # pylint: disable=protected-access
  assert conv_choice.choose("shape A", lambda: pytest.fail("measured again")) == "im2col"


def test_measuring_times_both_kernels_forward_and_backward():
  ms = layers.measure_convs((2, 6, 6, 3), (3, 3, 3, 4), (1, 1), "SAME", jnp.float32, repeats=2)
  assert set(ms) == {"xla", "im2col"} and all(v > 0 for v in ms.values())


@pytest.mark.parametrize("choice,primitive", [("xla", True), ("im2col", False)])
def test_a_measured_model_runs_the_recorded_kernel_and_computes_the_same(choice, primitive):
  """With every shape recorded for `choice`, the traced model holds XLA's convolution
  primitive exactly when the choice is XLA's, and its output equals the model forced to
  that kernel (the same program)."""
  def recorded():
    return {choice: 1.0, "im2col" if choice == "xla" else "xla": 2.0}
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 1))
  measured = build_model("conv4", num_classes=3, features=4, conv="measured")
  forced = build_model("conv4", num_classes=3, features=4, conv=choice)
  original = layers.measure_convs
  layers.measure_convs = lambda *args: recorded()
  try:
    variables = measured.init(jax.random.PRNGKey(1), x, train=False)
    jaxpr = str(jax.make_jaxpr(lambda v, x: measured.apply(v, x, train=False))(variables, x))
    out = measured.apply(variables, x, train=False)
  finally:
    layers.measure_convs = original
  assert ("conv_general_dilated" in jaxpr) == primitive
  np.testing.assert_array_equal(out, forced.apply(variables, x, train=False))
