"""Multi-task learning on a fixed pool of sinusoid tasks: a shared trunk, one head per task,
min_theta sum_i L_i(theta, D_i) (the baseline that transfer and meta-learning are compared with).

At test time a new task starts from the trunk and the mean of the task heads, then is
fine-tuned like any other initialisation.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtl import partition
from jaxtl.meta import tasks

HEAD = "^head/"


def init(model, key, num_tasks: int, x):
  """Params with every head leaf stacked `num_tasks` times: (trunk, heads)."""
  keys = jax.random.split(key, num_tasks)
  params = jax.vmap(lambda k: model.init(k, x, train=False)["params"])(keys)
  labels = partition.label_params(params, [(HEAD, True), (".*", False)])
  heads, trunk = partition.split(params, labels, bool)
  trunk = jax.tree_util.tree_map(lambda p: p[0], trunk)  # one shared trunk
  return trunk, heads


def mean_head_params(trunk, heads):
  return partition.merge(trunk, jax.tree_util.tree_map(lambda h: h.mean(0), heads))


def train(model, pool_seed: int, num_tasks: int, num_steps: int, tasks_per_step: int,
          shot: int, lr: float, seed: int):
  """Adam on the sum over `tasks_per_step` pool tasks of their mean squared errors.
  Returns the test-time initialisation (trunk + mean head)."""
  pool = jax.random.PRNGKey(pool_seed)
  k_a, k_p = jax.random.split(pool)
  amplitude = jax.random.uniform(k_a, (num_tasks,), minval=tasks.SINUSOID_AMPLITUDE[0],
                                 maxval=tasks.SINUSOID_AMPLITUDE[1])
  phase = jax.random.uniform(k_p, (num_tasks,), minval=tasks.SINUSOID_PHASE[0],
                             maxval=tasks.SINUSOID_PHASE[1])
  trunk, heads = init(model, jax.random.PRNGKey(seed), num_tasks, jnp.zeros((1, 1)))
  tx = optax.adam(lr)
  params = (trunk, heads)
  opt_state = tx.init(params)

  def loss_fn(params, key):
    trunk, heads = params
    k_t, k_x = jax.random.split(key)
    ids = jax.random.choice(k_t, num_tasks, (tasks_per_step,), replace=False)
    x = jax.random.uniform(k_x, (tasks_per_step, shot, 1), minval=tasks.SINUSOID_X[0],
                           maxval=tasks.SINUSOID_X[1])
    y = amplitude[ids][:, None, None] * jnp.sin(x - phase[ids][:, None, None])

    def task_loss(i, xi, yi):
      head = jax.tree_util.tree_map(lambda h: h[i], heads)
      out = model.apply({"params": partition.merge(trunk, head)}, xi, train=True)
      return jnp.mean(jnp.square(out - yi))

    return jnp.sum(jax.vmap(task_loss)(ids, x, y))

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def run(params, opt_state, key):
    def one(carry, i):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, jax.random.fold_in(key, i))
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    (params, opt_state), losses = jax.lax.scan(one, (params, opt_state), jnp.arange(num_steps))
    return params, opt_state, losses

  params, _, losses = run(params, opt_state, jax.random.fold_in(jax.random.PRNGKey(seed), 1))
  if not np.isfinite(np.asarray(losses[-1])):
    raise FloatingPointError("multi-task loss is not finite; lower the learning rate.")
  return mean_head_params(*params), float(losses[-1])
