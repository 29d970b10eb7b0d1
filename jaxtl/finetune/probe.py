"""A linear probe trained to convergence: `fit(...)`, `fit_grid(...)`, `accuracy(...)`.

LP-FT as Kumar et al. (2022) define it starts fine-tuning from the *converged* linear
probe: multinomial logistic regression on frozen features, full batch, with the L2 penalty
picked on validation (their probes use sklearn's L-BFGS logistic regression). A probe
trained for a few SGD epochs is a different starting point, so this module solves

  min_{kernel, bias}  mean_i CE(softmax(features_i @ kernel + bias), labels_i)
                      + 0.5 * l2 * ||kernel||^2          (the bias is not penalised)

with full-batch L-BFGS (`optax.lbfgs`, zoom line search) inside a `jax.lax.while_loop`
that stops once the gradient's max-abs is below `tol` (or after `max_iter` steps, or when
a step no longer moves the parameters: the line search found no decrease representable in
the dtype, as happens in float32 before a float64-sized `tol`). `l2` is traced, so
`fit_grid` solves a whole grid of penalties as one compiled program (vmap); the dtype
follows the features (float32 or float64 with `jax_enable_x64`).

Features are used as given: no standardisation happens inside, because the penalty's
meaning (and the validation pick of `l2`) depends on the feature scale the caller chose;
standardise before calling, and apply the same transform at evaluation.

The softmax is invariant to adding one constant to every bias, so the bias is unique only
up to that shift. The gradient never has a component along it, so from the zero start the
biases keep summing to 0 (up to rounding); from an `init`, they keep its sum.
"""
import functools

import jax
import jax.numpy as jnp
import optax


def _dtype(features):
  """The solve's dtype: the features' float dtype (integers and half floats go to float32)."""
  return jnp.promote_types(jnp.asarray(features).dtype, jnp.float32)


def objective(params, features, labels, l2):
  """Mean softmax cross-entropy plus 0.5 * l2 * ||kernel||^2; `params` = (kernel, bias)."""
  kernel, bias = params
  logits = features @ kernel + bias
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss + 0.5 * l2 * jnp.sum(kernel * kernel)


def _max_abs(tree):
  return jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]))


def _prepare(features, labels, l2):
  dtype = _dtype(features)
  return (jnp.asarray(features, dtype), jnp.asarray(labels, jnp.int32),
          jnp.asarray(l2, dtype))


def solve(features, labels, num_classes, l2, init=None, max_iter=500, tol=1e-6):
  """`fit` plus how it ended: ((kernel, bias), steps taken, max-abs gradient at the end).

  Separate from `fit` so that logs and tests can tell convergence from running out of
  steps without a second gradient evaluation."""
  features, labels, l2 = _prepare(features, labels, l2)
  dtype = features.dtype
  if init is None:
    params = (jnp.zeros((features.shape[1], num_classes), dtype), jnp.zeros((num_classes,), dtype))
  else:
    params = tuple(jnp.asarray(p, dtype) for p in init)
  fun = functools.partial(objective, features=features, labels=labels, l2=l2)
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(fun)

  def step(carry):
    params, state, steps, _ = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
    new = optax.apply_updates(params, updates)
    moved = jnp.any(jnp.stack([jnp.any(a != b) for a, b in zip(new, params)]))
    return new, state, steps + 1, moved

  def running(carry):
    _, state, steps, moved = carry
    # The line search leaves the gradient at the accepted point in its state (zeros
    # before the first step, hence `steps == 0`).
    grad = optax.tree_utils.tree_get(state, "grad")
    return (steps == 0) | ((steps < max_iter) & moved & (_max_abs(grad) >= tol))

  carry = (params, opt.init(params), jnp.asarray(0, jnp.int32), jnp.asarray(True))
  params, state, steps, _ = jax.lax.while_loop(running, step, carry)
  grad_max = jnp.where(steps == 0, jnp.inf, _max_abs(optax.tree_utils.tree_get(state, "grad")))
  return params, steps, grad_max


@functools.partial(jax.jit, static_argnames=("num_classes",))
def fit(features, labels, num_classes, l2, init=None, max_iter=500, tol=1e-6):
  """The L2-penalised multinomial logistic regression on `features` (N, D) as they are
  (not standardised): returns (kernel (D, C), bias (C,)) in the features' dtype.

  `l2`, `max_iter` and `tol` are traced (vmap over `l2` for a grid, see `fit_grid`);
  `init` is an optional (kernel, bias) start, zeros by default."""
  params, _, _ = solve(features, labels, num_classes, l2, init, max_iter, tol)
  return params


@functools.partial(jax.jit, static_argnames=("num_classes",))
def fit_grid(features, labels, num_classes, l2_grid, init=None, max_iter=500, tol=1e-6):
  """`fit` for every penalty in `l2_grid` (G,) as one compiled program: returns kernels
  (G, D, C) and biases (G, C). Every penalty runs until its own stopping test holds (a
  finished one is held fixed while the others go on); `init`, if given, starts them all."""
  one = lambda l2: fit(features, labels, num_classes, l2, init, max_iter, tol)
  return jax.vmap(one)(jnp.asarray(l2_grid, _dtype(features)))


@functools.partial(jax.jit, static_argnames=("num_classes",))
def solve_grid(features, labels, num_classes, l2_grid, init=None, max_iter=500, tol=1e-6):
  """`fit_grid` plus how each penalty's solve ended: (kernels, biases, steps (G,),
  max-abs gradients at the end (G,)), so a study can record that its probes converged."""
  one = lambda l2: solve(features, labels, num_classes, l2, init, max_iter, tol)
  (kernels, biases), steps, grad_max = jax.vmap(one)(jnp.asarray(l2_grid, _dtype(features)))
  return kernels, biases, steps, grad_max


@jax.jit
def accuracy(features, labels, kernel, bias):
  """Fraction of `labels` that the probe's arg-max logit gets right (a float array)."""
  features = jnp.asarray(features, _dtype(features))
  predictions = jnp.argmax(features @ kernel + bias, axis=-1)
  return jnp.mean(predictions == jnp.asarray(labels)).astype(features.dtype)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def gradient_norm(features, labels, num_classes, l2, kernel, bias):
  """Max-abs gradient of `objective` at (kernel, bias): the convergence measure `fit`
  stops on, for logs and tests. (`num_classes` is checked against the kernel's shape.)"""
  if kernel.shape[-1] != num_classes:
    raise ValueError(f"kernel has {kernel.shape[-1]} classes, num_classes={num_classes}")
  features, labels, l2 = _prepare(features, labels, l2)
  params = (jnp.asarray(kernel, features.dtype), jnp.asarray(bias, features.dtype))
  return _max_abs(jax.grad(objective)(params, features, labels, l2))
