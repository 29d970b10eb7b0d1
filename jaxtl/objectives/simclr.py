"""SimCLR (Chen et al. 2020): two augmented views of each image, pulled together and
pushed away from the other 2B - 2 views by NT-Xent at a temperature. The network's head
is the projection (discarded after pre-training, as in the paper)."""
import jax
import jax.numpy as jnp

from jaxtl.errors import ConfigError
from jaxtl.objectives.base import Objective
from jaxtl.objectives import augment as augmentations


def nt_xent(z1, z2, temperature: float):
  """NT-Xent of two views' projections (B, D) each: for each of the 2B views, the
  cross-entropy of picking its partner among the other 2B - 1 by cosine similarity /
  temperature; the mean over the 2B."""
  z = jnp.concatenate([z1, z2])
  z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
  n = z.shape[0]
  sim = z @ z.T / temperature
  sim = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, sim)  # a view is not its own partner
  partner = (jnp.arange(n) + n // 2) % n
  return jnp.mean(jax.nn.logsumexp(sim, axis=-1) - sim[jnp.arange(n), partner])


def objective(num_classes: int, input_shape, options) -> Objective:
  """Views by `augment` (options' augmentation arguments); options' `temperature`, and
  `projection_dim` outputs."""
  del num_classes, input_shape
  temperature = options["temperature"]
  if temperature <= 0:
    raise ConfigError(f"simclr temperature={temperature} must be positive.")

  def prepare(key, images, labels):
    k1, k2 = jax.random.split(key)
    views = [augmentations.from_options(k, images, options) for k in (k1, k2)]
    return jnp.concatenate(views), images.shape[0]

  def loss(outputs, batch):
    return nt_xent(outputs[:batch], outputs[batch:], temperature)

  def metrics(outputs, batch):
    z = outputs / jnp.linalg.norm(outputs, axis=-1, keepdims=True)
    sim = jnp.where(jnp.eye(len(z), dtype=bool), -jnp.inf, z @ z.T)
    partner = (jnp.arange(len(z)) + batch) % len(z)
    return {"loss": loss(outputs, batch),
            "partner_top1": jnp.mean(jnp.argmax(sim, -1) == partner)}
  return Objective("simclr", options["projection_dim"], prepare, loss, metrics)
