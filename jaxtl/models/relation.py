"""A learned metric: the Relation Network of Sung et al. (2018, "Learning to Compare").

ProtoNets compare a query with each class by a fixed distance; a relation network learns
the comparison. Each image is embedded by MAML's Conv4; a class is the sum of its
support embeddings (the paper's, for K shots); each (class, query) pair, the two
embeddings concatenated, goes through a small network to one relation score. The
scores are the query's logits (`algorithm="relation"`, trained as the paper does: the
sigmoid of each score regressed on the one-hot label by mean squared error).

Adapted to this repository's 28x28 Omniglot network: its last map is 2x2, so the
relation module is a multi-layer perceptron on the flattened pair (the paper applies two
conv blocks to 5x5 maps, then layers of 8 and 1 units); and layer norm replaces batch
norm, as in the black box (`jaxtl.models.blackbox`), so that a query's scores depend on
the support set and itself only. Any number of classes: `way` sets how many classes the
support set holds, not a parameter's shape.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtl.models.conv4 import Conv4


class RelationNet(nn.Module):
  """`model(support_x, support_y, query_x)` -> relation scores (queries, way)."""
  way: int
  features: int = 64
  downsample: str = "stride"
  conv: str = "xla"
  hidden: tuple = (64, 8)  # the relation module's layers before its one output

  @nn.compact
  def __call__(self, support_x, support_y, query_x, train: bool = True):
    embed = Conv4(0, self.features, self.downsample, self.conv, pool="flatten", norm="layer",
                  name="embed")(jnp.concatenate([support_x, query_x]), train)
    support, query = embed[:support_x.shape[0]], embed[support_x.shape[0]:]
    classes = jax.nn.one_hot(support_y, self.way, dtype=support.dtype).T @ support
    pairs = jnp.concatenate([jnp.broadcast_to(classes[None], (query.shape[0], *classes.shape)),
                             jnp.broadcast_to(query[:, None], (query.shape[0], *classes.shape))],
                            axis=-1)  # (queries, way, 2 * features)
    x = pairs
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f"relation{i + 1}")(x))
    return nn.Dense(1, name="score")(x)[..., 0]
