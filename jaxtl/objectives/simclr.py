"""SimCLR (Chen et al. 2020): two augmented views of each image (random resized crop and
grey-level jitter, `augment.simclr_view`), their projections pulled together and pushed
away from the other 2B - 2 views by NT-Xent at a temperature. The projection is the
paper's non-linear head, a 2-layer MLP on the features (`projection_hidden=0`: a linear
one, its ablation), under `head/`, so fine-tuning drops it (`objectives.network`)."""
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtl.errors import ConfigError
from jaxtl.objectives import augment as augmentations
from jaxtl.objectives.base import Objective


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


class Projection(nn.Module):
  """g(h) = W2 relu(W1 h) on the pooled features h (Chen et al.'s projection head);
  `hidden=0`: g(h) = W h."""
  dim: int
  hidden: int
  pooled = True  # on the features the model's own head would see

  @nn.compact
  def __call__(self, h):
    if self.hidden:
      h = nn.relu(nn.Dense(self.hidden, name="hidden")(h))
    return nn.Dense(self.dim, name="out")(h)


def objective(num_classes: int, input_shape, options) -> Objective:
  """Views by `augment.simclr_view` (options' `crop_scale`, `jitter`); options'
  `temperature`, `projection_dim` outputs after `projection_hidden` hidden units."""
  del num_classes, input_shape
  temperature, hidden = options["temperature"], options["projection_hidden"]
  if temperature <= 0:
    raise ConfigError(f"simclr temperature={temperature} must be positive.")
  low, high = options["crop_scale"]
  if not 0 < low <= high <= 1:
    raise ConfigError(f"simclr crop_scale={tuple(options['crop_scale'])}: the crop's area "
                      "fraction (low, high) needs 0 < low <= high <= 1.")
  if hidden < 0:
    raise ConfigError(f"simclr projection_hidden={hidden} must be >= 0 (0: linear).")

  def prepare(key, images, labels):
    del labels
    views = [augmentations.simclr_view(k, images, (low, high), options["jitter"])
             for k in jax.random.split(key)]
    return jnp.concatenate(views), images.shape[0]

  def loss(outputs, batch):
    return nt_xent(outputs[:batch], outputs[batch:], temperature)

  def metrics(outputs, batch):
    z = outputs / jnp.linalg.norm(outputs, axis=-1, keepdims=True)
    sim = jnp.where(jnp.eye(len(z), dtype=bool), -jnp.inf, z @ z.T)
    partner = (jnp.arange(len(z)) + batch) % len(z)
    return {"loss": loss(outputs, batch),
            "partner_top1": jnp.mean(jnp.argmax(sim, -1) == partner)}
  head = lambda: Projection(options["projection_dim"], hidden)
  return Objective("simclr", options["projection_dim"], prepare, loss, metrics, head)
