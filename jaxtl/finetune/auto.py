"""Auto-RGN and Auto-SNR (Lee et al. 2023, surgical fine-tuning) as optax transforms.

Both wrap an inner optimizer, measure a per-tensor statistic of the raw gradients during
the first `measure_steps` steps of every `period` steps (an epoch), and scale each
tensor's update by what they measured (in between, the last measurement is kept):

  * `auto_rgn`: scale = RGN / max RGN with RGN = ||g|| / ||w|| (relative gradient norm),
    averaged over the measuring steps: a per-tensor learning-rate multiplier in [0, 1].
  * `auto_snr`: SNR = mean over the tensor's entries of E[g]^2 / Var[g], the moments taken
    over the measuring steps' minibatch gradients; scale = 1 if SNR / max SNR >= threshold
    else 0 (the paper thresholds per-example SNR; minibatch gradients stand in for examples).

They compose with the partition machinery like any optimizer: the trainer hands them only
the trainable leaves, and they can drive an inner loop as well.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

EPS = 1e-12


class AutoScaleState(NamedTuple):
  count: jax.Array
  first: Any   # per-leaf running sums during measurement (RGN: scalars; SNR: sum of g)
  second: Any  # SNR: sum of g^2 (RGN: unused zeros)
  scales: Any  # per-leaf multipliers in use
  inner: Any


def _tree_max(tree):
  return jnp.max(jnp.stack(jax.tree_util.tree_leaves(tree)))


def _auto_scale(inner: optax.GradientTransformation, period: int, measure_steps: int,
                stats, to_scales) -> optax.GradientTransformation:
  if period < 1 or not 1 <= measure_steps <= period:
    raise ValueError(f"need period >= 1 and 1 <= measure_steps <= period; got {period}, "
                     f"{measure_steps}.")

  def init(params):
    zeros_like_first, zeros_like_second = stats(params, params, init=True)
    return AutoScaleState(jnp.zeros((), jnp.int32), zeros_like_first, zeros_like_second,
                          jax.tree_util.tree_map(lambda p: jnp.ones((), p.dtype), params),
                          inner.init(params))

  def update(grads, state, params=None):
    if params is None:
      raise ValueError("auto_rgn / auto_snr need params in update().")
    pos = state.count % period
    measuring = pos < measure_steps
    first, second = stats(grads, params)
    restart = lambda acc, new: jnp.where(pos == 0, new, jnp.where(measuring, acc + new, acc))
    first = jax.tree_util.tree_map(restart, state.first, first)
    second = jax.tree_util.tree_map(restart, state.second, second)
    n = jnp.minimum(pos + 1, measure_steps).astype(jnp.float32)
    fresh = to_scales(first, second, n)
    scales = jax.tree_util.tree_map(lambda f, s: jnp.where(measuring, f, s), fresh,
                                    state.scales)
    updates, inner_state = inner.update(grads, state.inner, params)
    updates = jax.tree_util.tree_map(lambda u, s: u * s.astype(u.dtype), updates, scales)
    return updates, AutoScaleState(state.count + 1, first, second, scales, inner_state)

  return optax.GradientTransformation(init, update)


def relative_gradient_norms(grads, params):
  """Per tensor ||g|| / ||w||."""
  return jax.tree_util.tree_map(
      lambda g, w: jnp.linalg.norm(g.ravel()) / (jnp.linalg.norm(w.ravel()) + EPS), grads, params)


def rgn_scales(rgn):
  """RGN / max RGN: the Auto-RGN learning-rate multipliers."""
  top = _tree_max(rgn)
  return jax.tree_util.tree_map(lambda r: r / (top + EPS), rgn)


def auto_rgn(inner: optax.GradientTransformation, period: int,
             measure_steps: int = 1) -> optax.GradientTransformation:
  def stats(grads, params, init=False):
    rgn = relative_gradient_norms(grads, params)
    if init:
      rgn = jax.tree_util.tree_map(jnp.zeros_like, rgn)
    return rgn, jax.tree_util.tree_map(jnp.zeros_like, rgn)

  return _auto_scale(inner, period, measure_steps, stats,
                     lambda first, second, n: rgn_scales(
                         jax.tree_util.tree_map(lambda r: r / n, first)))


def snr_values(sum_g, sum_g2, n):
  """Per tensor mean over entries of mean^2 / variance, from sums over n samples."""
  def snr(s1, s2):
    mean = s1 / n
    var = jnp.maximum(s2 / n - mean ** 2, 0.0)
    return jnp.mean(mean ** 2 / (var + EPS))
  return jax.tree_util.tree_map(snr, sum_g, sum_g2)


def auto_snr(inner: optax.GradientTransformation, period: int, measure_steps: int = 4,
             threshold: float = 0.1) -> optax.GradientTransformation:
  if measure_steps < 2:
    raise ValueError("auto_snr needs measure_steps >= 2 to estimate a variance.")

  def stats(grads, params, init=False):
    del params
    g = jax.tree_util.tree_map(jnp.zeros_like, grads) if init else grads
    return g, jax.tree_util.tree_map(jnp.square, g)

  def to_scales(sum_g, sum_g2, n):
    snr = snr_values(sum_g, sum_g2, n)
    top = _tree_max(snr)
    on = jax.tree_util.tree_map(lambda s: (s / (top + EPS) >= threshold).astype(jnp.float32),
                                snr)
    # While fewer than two samples exist the variance is meaningless: train everything.
    return jax.tree_util.tree_map(lambda o: jnp.where(n >= 2, o, 1.0), on)

  return _auto_scale(inner, period, measure_steps, stats, to_scales)


def wrap(tx: optax.GradientTransformation, strategy: str, period: int, measure_steps: int,
         snr_threshold: float) -> optax.GradientTransformation:
  """`tx` wrapped in Auto-RGN / Auto-SNR when `strategy` names one, else `tx`: re-measure
  every `period` steps from the first `measure_steps` of them (Auto-SNR needs 2)."""
  measure = min(measure_steps, period)
  if strategy == "auto_rgn":
    return auto_rgn(tx, period, measure)
  if strategy == "auto_snr":
    return auto_snr(tx, period, max(measure, 2), snr_threshold)
  return tx
