"""jaxtl: transfer learning and meta-learning in JAX."""

__version__ = "0.1.0"
