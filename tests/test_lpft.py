"""LP-FT as Kumar et al. define it (`jaxtl.finetune.lpft`): the probe sees exactly the
features the head sees, and its head computes on raw features what it learned on
standardised ones, so fine-tuning starts from the converged probe."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.finetune import lpft, probe
from jaxtl.models import build_model
from tests import reference


def test_head_inputs_are_what_the_head_sees():
  model = build_model("resnet", num_classes=3, widths=(4, 4, 8))
  x = np.random.default_rng(0).random((5, 8, 8, 1), np.float32)
  variables = model.init(jax.random.PRNGKey(1), x[:1], train=False)
  feats = lpft.head_inputs(model, variables, x)
  head = variables["params"]["head"]
  logits = model.apply(variables, x, train=False)
  np.testing.assert_allclose(feats @ np.asarray(head["kernel"]) + np.asarray(head["bias"]),
                             np.asarray(logits), rtol=1e-5, atol=1e-5)
  body = model.apply(variables, x, train=False, stop=3)  # the map before pooling
  np.testing.assert_allclose(feats, np.asarray(body).mean((1, 2)), rtol=1e-6, atol=1e-6)


def test_the_probes_head_on_raw_features_is_the_probe_on_standardised_ones():
  rng = np.random.default_rng(0)
  labels = np.arange(60) % 3
  feats = rng.normal(size=(60, 4)) * [1.0, 10.0, 0.1, 3.0] + labels[:, None] + 5.0
  with reference.float64():
    mean, std = lpft.standardizer(feats)
    z = jnp.asarray((feats - mean) / std)
    kernel, bias = probe.fit(z, jnp.asarray(labels), 3, 1e-2, tol=1e-10)
    assert float(probe.gradient_norm(z, jnp.asarray(labels), 3, 1e-2, kernel, bias)) < 1e-8
    want = np.asarray(z @ kernel + bias)
  head = lpft.probe_head(kernel, bias, mean, std)
  got = feats @ head["kernel"].astype(np.float64) + head["bias"]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
