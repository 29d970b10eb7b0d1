"""Nearest class mean, implemented once: ProtoNets' logits (`algorithms`), the `ncm`
few-shot baseline (`baselines`) and the pre-training study's tuning proxy
(`jaxtl.studies.pretraining.tuning.ncm_accuracy`)."""
import jax
import jax.numpy as jnp


def class_means(features, labels, num_classes: int):
  """(num_classes, D): the mean feature of each label 0..num_classes-1."""
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)
  return (one_hot.T @ features) / one_hot.sum(0)[:, None]


def logits(support, support_y, query, num_classes: int):
  """(Q, num_classes): minus the squared Euclidean distance of each query feature to each
  class mean of the support's features."""
  return to_means(class_means(support, support_y, num_classes), query)


def to_means(means, query):
  """(Q, C): minus the squared Euclidean distance of each query feature to each mean."""
  return -jnp.sum(jnp.square(query[:, None, :] - means[None]), -1)
