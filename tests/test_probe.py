"""The converged linear probe (`jaxtl.finetune.probe`): it reaches the optimum of the
penalised logistic regression, checked against scipy, a closed form and float64.

Tolerances are not tuned to a machine; they come from the problem. The objective is
strongly convex except along one direction (adding a constant to every bias), so with
mu the smallest Hessian eigenvalue on the complement of that direction, a point with
gradient g lies within ~||g||_2 / mu of the optimum (a factor 2 covers the Hessian
changing between the point and the optimum). Distances are measured on that complement
(biases centred), and every bound is also checked to be small, so no test passes loosely.
"""
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.special

from jaxtl.finetune import probe

N, D, C, L2 = 200, 8, 3, 1e-2
EPS64 = np.finfo(np.float64).eps
EPS32 = np.finfo(np.float32).eps


def _problem(n=N, d=D, c=C, seed=0):
  """Gaussian features with class-dependent means: well conditioned, not separable."""
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % c
  means = rng.normal(0.0, 1.0, (c, d))
  return means[labels] + rng.normal(0.0, 1.0, (n, d)), labels


def _theta(kernel, bias):
  return np.concatenate([np.asarray(kernel, np.float64).ravel(), np.asarray(bias, np.float64)])


def _unpack(theta, d, c):
  return theta[:d * c].reshape(d, c), theta[d * c:]


def _reference(theta, x, y, c, l2):
  """Objective and gradient in numpy float64, independent of the JAX code under test."""
  kernel, bias = _unpack(theta, x.shape[1], c)
  logits = x @ kernel + bias
  lse = scipy.special.logsumexp(logits, axis=1)
  value = np.mean(lse - logits[np.arange(len(y)), y]) + 0.5 * l2 * np.sum(kernel ** 2)
  residual = (np.exp(logits - lse[:, None]) - np.eye(c)[y]) / len(y)
  return value, _theta(x.T @ residual + l2 * kernel, residual.sum(0))


def _curvature(theta, x, y, c, l2):
  """(mu, L): extreme Hessian eigenvalues on the complement of the bias shift, and the
  orthonormal basis Q of that complement."""
  kernel, bias = _unpack(theta, x.shape[1], c)
  logits = x @ kernel + bias
  p = np.exp(logits - scipy.special.logsumexp(logits, axis=1)[:, None])
  a = np.concatenate([x, np.ones((len(x), 1))], axis=1)
  hessian = sum(np.kron(np.outer(ai, ai), np.diag(pi) - np.outer(pi, pi)) for ai, pi in zip(a, p))
  hessian = hessian / len(x) + l2 * np.diag(np.r_[np.ones(x.shape[1] * c), np.zeros(c)])
  shift = np.r_[np.zeros(x.shape[1] * c), np.ones(c)] / np.sqrt(c)
  q = scipy.linalg.null_space(shift[None])
  eig = np.linalg.eigvalsh(q.T @ hessian @ q)
  return eig[0], eig[-1], q


def _distance_bound(thetas, x, y, c, l2, mu):
  """Bound on the distance between points of `thetas` and the optimum's: the gradient
  measured in float64 plus its rounding (eps64 times the size of its terms), over mu."""
  floor = np.sqrt(thetas[0].size) * EPS64 * (np.abs(x).max() + 1.0) * 10
  return sum(2 * (np.linalg.norm(_reference(t, x, y, c, l2)[1]) + floor) / mu for t in thetas)


def _gap(a, b, q):
  return np.linalg.norm(q.T @ (a - b))


def test_reaches_the_optimum_scipy_finds():
  x, y = _problem()
  with jax.enable_x64(True):
    default = probe.fit(x, y, C, L2)
    assert default[0].dtype == jnp.float64
    assert float(probe.gradient_norm(x, y, C, L2, *default)) < 1e-6
    kernel, bias = probe.fit(x, y, C, L2, tol=1e-10)
    grad = float(probe.gradient_norm(x, y, C, L2, kernel, bias))
  assert grad < 1e-10
  ours = _theta(kernel, bias)
  # The independent numpy gradient agrees that this is a stationary point.
  assert np.abs(_reference(ours, x, y, C, L2)[1]).max() < 1e-9

  result = scipy.optimize.minimize(_reference, np.zeros(D * C + C), args=(x, y, C, L2),
                                   jac=True, method="BFGS",
                                   options=dict(gtol=1e-10, maxiter=10_000))
  mu, _, q = _curvature(result.x, x, y, C, L2)
  assert mu > 0  # positive definite off the bias shift
  bound = _distance_bound([ours, result.x], x, y, C, L2, mu)
  scale = np.linalg.norm(q.T @ result.x)
  assert bound < 1e-5 * scale, (bound, scale)  # the comparison below is a tight one
  assert _gap(ours, result.x, q) <= bound
  # f(theta) - f* <= ||g||^2 / (2 mu) (2 mu: the same slack); values carry N * eps64 rounding.
  squares = [np.sum(_reference(t, x, y, C, L2)[1] ** 2) for t in (ours, result.x)]
  value_bound = sum(squares) / mu + len(x) * EPS64 * abs(result.fun)
  assert abs(_reference(ours, x, y, C, L2)[0] - result.fun) <= value_bound


def test_closed_form_symmetric_problem():
  """D=1, C=2, x=+1 for every class-1 example and -1 for every class-0 one (balanced).
  With m = w1 - w0 and d = b1 - b0, the loss is 0.5 * (softplus(-(m+d)) + softplus(-(m-d)))
  + 0.5 * l2 * (w0^2 + w1^2). For fixed m the penalty is least at w1 = -w0 = m/2, and the
  loss is even and convex in d, so d = 0: the optimum is kernel [[-w, w]] with
  w = m/2 solving d/dm [softplus(-m) + l2 m^2 / 4] = 0, i.e. l2 * w = sigmoid(-2w)."""
  l2, n = 0.1, 16
  y = np.r_[np.ones(n, int), np.zeros(n, int)]
  x = np.where(y == 1, 1.0, -1.0)[:, None]
  w = scipy.optimize.brentq(lambda w: l2 * w - scipy.special.expit(-2 * w), 0.0, 1.0 / l2,
                            xtol=1e-15, rtol=4 * EPS64)
  expected = _theta([[-w, w]], [0.0, 0.0])
  with jax.enable_x64(True):
    kernel, bias = probe.fit(x, y, 2, l2, tol=1e-12)
  ours = _theta(kernel, bias)
  assert np.abs(_reference(expected, x, y, 2, l2)[1]).max() < 1e-14  # the derivation holds
  mu, _, q = _curvature(expected, x, y, 2, l2)
  bound = _distance_bound([ours], x, y, 2, l2, mu) + 1e-15
  assert bound < 1e-9 * w
  assert _gap(ours, expected, q) <= bound
  assert abs(float(bias[1] - bias[0])) <= bound


def test_grid_equals_separate_fits_and_shrinks_with_l2():
  x, y = _problem(seed=1)
  grid = np.array([1e-3, 1e-2, 1e-1, 1.0])
  with jax.enable_x64(True):
    kernels, biases = probe.fit_grid(x, y, C, grid, tol=1e-10)
    separate = [probe.fit(x, y, C, l2, tol=1e-10) for l2 in grid]
  assert kernels.shape == (len(grid), D, C) and biases.shape == (len(grid), C)
  norms, bounds = [], []
  for g, l2 in enumerate(grid):
    batched, alone = _theta(kernels[g], biases[g]), _theta(*separate[g])
    mu, _, q = _curvature(alone, x, y, C, l2)
    bound = _distance_bound([batched, alone], x, y, C, l2, mu)
    assert bound < 1e-6 * np.linalg.norm(q.T @ alone)
    assert _gap(batched, alone, q) <= bound
    norms.append(np.linalg.norm(kernels[g]))
    bounds.append(bound / 2)  # each solution's own distance to its optimum
  # A larger penalty gives a smaller kernel, by more than the solutions' uncertainty.
  assert all(a - b > ea + eb for a, b, ea, eb in zip(norms, norms[1:], bounds, bounds[1:]))


def test_solve_grid_reports_how_each_solve_ended():
  """The study records each probe's steps and final gradient: converged solves end
  under the tolerance, a solve cut at max_iter says so (gradient above it)."""
  x, y = _problem(seed=2)
  grid = np.array([1e-2, 1.0])
  with jax.enable_x64(True):
    kernels, biases, steps, grad_max = probe.solve_grid(x, y, C, grid, tol=1e-8)
    fitted = probe.fit_grid(x, y, C, grid, tol=1e-8)
    np.testing.assert_array_equal(kernels, fitted[0])
    for g, l2 in enumerate(grid):
      at_end = probe.gradient_norm(x, y, C, l2, kernels[g], biases[g])
      assert 0 < steps[g] < 500 and grad_max[g] < 1e-8 and abs(grad_max[g] - at_end) <= 1e-12
    _, _, steps, grad_max = probe.solve_grid(x, y, C, grid, max_iter=2, tol=1e-8)
  assert list(steps) == [2, 2] and all(g > 1e-8 for g in grad_max)


def test_float32_reaches_the_float64_optimum(monkeypatch):
  """Rounding the features and the gradient to float32 perturbs the problem by ~eps32
  relative, which moves the solution by ~kappa * eps32 relative (kappa = L / mu, the
  condition number off the bias shift); 10x that is the tolerance."""
  x, y = _problem()
  with jax.enable_x64(True):
    reference = _theta(*probe.fit(x, y, C, L2, tol=1e-10))
  x32 = x.astype(np.float32)
  kernel, bias = probe.fit(x32, y, C, L2)
  assert kernel.dtype == jnp.float32 and bias.dtype == jnp.float32
  mu, lipschitz, q = _curvature(reference, x, y, C, L2)
  tolerance = 10 * (lipschitz / mu) * EPS32
  assert tolerance < 1e-3
  relative = _gap(_theta(kernel, bias), reference, q) / np.linalg.norm(q.T @ reference)
  assert relative <= tolerance, (relative, tolerance)
  accuracy = probe.accuracy(x32, y, kernel, bias)
  assert accuracy.dtype == jnp.float32 and 1 / C < float(accuracy) <= 1

  # One compiled program serves a grid: the solver is traced once whatever the values,
  # and the program holds as many loops for 5 penalties as for 2 (vmapped, not unrolled).
  traces = []
  solve = probe.solve
  monkeypatch.setattr(probe, "solve", lambda *a, **k: traces.append(1) or solve(*a, **k))
  jax.clear_caches()
  grids = [np.float32([1e-3, 1e-2]), np.float32([0.5, 2.0])]
  results = [probe.fit_grid(x32, y, C, g) for g in grids]
  assert len(traces) == 1
  assert np.all(np.isfinite(np.asarray(results[1][0])))
  loops = [str(jax.make_jaxpr(lambda g: probe.fit_grid(x32, y, C, g))(np.ones(n, np.float32)))
           .count("while[") for n in (2, 5)]
  assert loops[0] == loops[1] > 0
