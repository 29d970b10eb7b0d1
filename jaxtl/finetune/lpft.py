"""LP-FT as Kumar et al. (2022) define it: a linear probe trained to convergence on frozen
features (`jaxtl.finetune.probe`: full-batch logistic regression, its L2 penalty picked
on validation), then every layer fine-tuned from it with a learning-rate grid of its own
(`lpft_rows`, the surgical study's rows `lp` and `lp_ft`).

`head_inputs` gives the features the head sees (after pooling) for jaxtl's models with a
linear `head`: it runs the head block with an identity kernel, so whatever pooling or
flattening the model does before its head is kept exactly. The probe is solved on
standardised features and mapped back to a head of the network (`probe_head`).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.errors import ConfigError
from jaxtl.finetune import grid, probe, tuning


def head_inputs(model, variables, images, batch_size: int = 1000) -> np.ndarray:
  """(N, D) float32: the input of the model's linear `head` for `images` (running BN
  statistics), computed once: the frozen body of a linear probe."""
  names = list(model.block_names())
  if names[-1] != "head" or "kernel" not in variables["params"].get("head", {}):
    raise ConfigError(f"LP-FT needs a linear 'head' block; {type(model).__name__} has "
                      f"blocks {names}.")
  start = len(names) - 1
  maps = grid.prefix_features(model, variables, images, start, batch_size)
  dim = variables["params"]["head"]["kernel"].shape[0]
  fn = _identity_head(model.clone(num_classes=dim), start)
  params = dict(variables["params"], head={"kernel": jnp.eye(dim), "bias": jnp.zeros(dim)})
  wide = dict(variables, params=params)
  return np.concatenate([np.asarray(fn(wide, maps[i:i + batch_size]))
                         for i in range(0, len(maps), batch_size)])


@functools.lru_cache(maxsize=None)
def _identity_head(model, start):
  return jax.jit(lambda v, x: model.apply(v, x, train=False, start=start))


def standardizer(train_features):
  """(mean, std) of the training features (std floored): the probe's input scaling."""
  mean = train_features.mean(0)
  std = np.maximum(train_features.std(0), 1e-6)
  return mean, std


def probe_head(kernel, bias, mean, std) -> dict:
  """The head {"kernel", "bias"} computing on raw features what the probe computes on
  standardised ones: (f - mean) / std @ K + b = f @ (K / std) + (b - (mean / std) @ K)."""
  kernel, bias = np.asarray(kernel, np.float64), np.asarray(bias, np.float64)
  raw = kernel / std[:, None]
  return {"kernel": raw.astype(np.float32),
          "bias": (bias - (mean / std) @ kernel).astype(np.float32)}


def fit_probes(train_feats, train_labels, num_classes, l2_grid, eval_sets):
  """Probes for every L2 in `l2_grid` on one seed's training features; returns
  ({set name: accuracy per l2}, heads per l2, {"steps": [...], "grad_max": [...]} per
  l2: how each L-BFGS solve ended). `eval_sets`: name -> (features, labels), raw
  features (standardised here with the training statistics)."""
  mean, std = standardizer(train_feats)
  z = lambda f: jnp.asarray((f - mean) / std, jnp.float32)
  kernels, biases, steps, grad_max = probe.solve_grid(
      z(train_feats), jnp.asarray(train_labels), num_classes, jnp.asarray(l2_grid, jnp.float32))
  scores = {name: [float(probe.accuracy(z(f), jnp.asarray(y), k, b))
                   for k, b in zip(kernels, biases)] for name, (f, y) in eval_sets.items()}
  heads = [probe_head(k, b, mean, std) for k, b in zip(kernels, biases)]
  return scores, heads, {"steps": [int(n) for n in steps],
                         "grad_max": [float(g) for g in grad_max]}


def lpft_rows(shift, label, overrides) -> dict:
  """Kumar et al.'s LP-FT: {"lp": the converged probe, label: fine-tuned from it}, the
  probe's L2 and the fine-tuning's learning rate picked per pre-training on validation."""
  config = shift.config
  pool = shift.task.target_train
  nc = shift.task.num_classes
  l2_grid = tuple(config.probe_l2_grid)

  def probe_cell(p):
    """Probes for every L2 of the grid on each run of source p, scored everywhere."""
    feats = shift.head_features(p, "pool")
    sets = {n: (shift.head_features(p, n), ds.labels) for n, ds in shift.sets.items()}
    out = []
    for s in shift.runs[p]:
      idx = shift.train_index[s]
      scores, heads, ended = fit_probes(feats[idx], pool.labels[idx], nc, l2_grid, sets)
      out.append({"seed": s, "scores": scores, "solver": ended,  # convergence, per l2
                  "heads": [{k: v.tolist() for k, v in h.items()} for h in heads]})
    return out

  row_config = config.finetune.copy_and_resolve_references()
  row_config.update(dict(overrides, strategy="full"))
  spec = grid.spec_from_config(row_config, shift.model.block_names(), (), config.chunk)
  wd = config.wd_grid[0]  # as `all`: the same weight decay for the same fine-tuning
  lp = {"l2_grid": list(l2_grid), "picks": [], "per_seed": [], "changed_stats": 0,
        "changed_blocks": ["head"], "changed_params": int(sum(np.size(v) for v in
            jax.tree_util.tree_leaves(next(iter(shift.sources.values()))[0]["params"]["head"])))}
  ft, picked = {"picks": [], "per_seed": []}, []
  for p in config.pretrain_seeds:
    probes = shift.cell(label, overrides, p, "probe", lambda p=p: probe_cell(p))
    val = [float(np.mean([r["scores"]["val"][i] for r in probes])) for i in range(len(l2_grid))]
    i = int(np.argmax(val))  # the L2 grid is solved whole (vmapped): no widening
    lp["picks"].append({"pretrain_seed": p, "l2": l2_grid[i],  # 0 ends the valid values
                        "on_edge": i == len(l2_grid) - 1 or (i == 0 and l2_grid[0] > 0),
                        "val_accuracy": {f"{v:g}": a for v, a in zip(l2_grid, val)}})
    lp["per_seed"] += [dict({f"{n}_accuracy": r["scores"][n][i] for n in shift.sets},
                            pretrain_seed=p, seed=r["seed"]) for r in probes]
    cells = {}

    def ft_cell(lr, p=p, probes=probes, i=i, sets=("val",)):
      runs = []
      for r in probes:
        head = {k: jnp.asarray(v, jnp.float32) for k, v in r["heads"][i].items()}
        variables = shift.sources[p][0]
        variables = dict(variables, params=dict(variables["params"], head=head))
        runs.append(shift.fine_tune(spec, p, lr, wd, variables, [r["seed"]], sets))
      return dict(runs[0], per_seed=[row for c in runs for row in c["per_seed"]])

    def at_lr(lr, p=p, cells=cells, i=i, ft_cell=ft_cell):
      cells[lr] = shift.cell(label, overrides, p, f"ft_l2{l2_grid[i]:g}_lr{lr:g}_wd{wd:g}",
                             lambda: ft_cell(lr), lr=lr, l2=l2_grid[i], wd=wd)
      return tuning.pooled_val([cells[lr]])

    lr, _, scores, edge = tuning.tune(config.lpft_lr_grid, config.lr_limits, at_lr,
                               f"{shift.spec} / {label} / pre-training {p} learning rate",
                               config.lr_refine)
    ft["picks"].append(dict(tuning.pick_record(p, lr, wd, scores, edge), l2=l2_grid[i]))
    cell = shift.scored_pick(label, overrides, p, f"ft_l2{l2_grid[i]:g}_lr{lr:g}_wd{wd:g}",
                             cells[lr], lambda lr=lr, ft_cell=ft_cell: ft_cell(lr, sets=None),
                             lr=lr, l2=l2_grid[i], wd=wd)
    ft["per_seed"] += cell["per_seed"]
    picked.append(cell)
  lp.update(l2=tuning.modal([q["l2"] for q in lp["picks"]]),
            on_edge=any(q["on_edge"] for q in lp["picks"]))
  ft.update(tuning.row_summary(ft["picks"]), **tuning.changes(picked))
  return {"lp": lp, label: ft}
