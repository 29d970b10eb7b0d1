"""A black-box meta-learner's network: it reads a task's support set and predicts its
queries in one forward pass, with no inner gradient steps (the recipe's third family,
after MANN, Santoro et al. 2016, and SNAIL, Mishra et al. 2018).

Each image becomes a token: its Conv4 embedding (layer norm, so that no image's
embedding depends on the rest of the batch), projected to `width`, plus a learned
embedding of its label (support) or of an extra "unknown" label (queries). A transformer
encoder reads the tokens; a support token attends to the support tokens, a query token
to the support tokens and itself. So a query's prediction depends on the support set
and on itself, not on the other queries, and, with no positional encoding, not on the
order of the support set (a set function, up to float rounding).
"""
import flax.linen as nn
import jax.numpy as jnp

from jaxtl.models.conv4 import Conv4


class BlackBox(nn.Module):
  """`model(support_x, support_y, query_x)` -> query logits (queries, way)."""
  way: int
  features: int = 64
  downsample: str = "stride"
  conv: str = "xla"
  width: int = 128
  depth: int = 2
  heads: int = 4

  @nn.compact
  def __call__(self, support_x, support_y, query_x, train: bool = True):
    num_support, num_query = support_x.shape[0], query_x.shape[0]
    embed = Conv4(0, self.features, self.downsample, self.conv, pool="mean", norm="layer",
                  name="embed")(jnp.concatenate([support_x, query_x]), train)
    labels = jnp.concatenate([jnp.asarray(support_y, jnp.int32),
                              jnp.full((num_query,), self.way, jnp.int32)])
    x = (nn.Dense(self.width, name="tokens")(embed)
         + nn.Embed(self.way + 1, self.width, name="labels")(labels))
    n = num_support + num_query
    mask = (jnp.arange(n)[None, :] < num_support) | jnp.eye(n, dtype=bool)  # row attends col
    for i in range(self.depth):
      x = x + nn.MultiHeadDotProductAttention(self.heads, name=f"layer{i + 1}_attention")(
          nn.LayerNorm(name=f"layer{i + 1}_ln1")(x), mask=mask[None])
      h = nn.relu(nn.Dense(2 * self.width, name=f"layer{i + 1}_mlp1")(
          nn.LayerNorm(name=f"layer{i + 1}_ln2")(x)))
      x = x + nn.Dense(self.width, name=f"layer{i + 1}_mlp2")(h)
    return nn.Dense(self.way, name="head")(nn.LayerNorm(name="final_ln")(x[num_support:]))
