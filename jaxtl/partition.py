"""Parameter partitions: one mechanism for every choice of which parameters adapt.

A *pattern table* is an ordered sequence of `(regex, label)` rows. Each parameter
leaf is named by its path (`block1/conv/kernel`); its label is that of the first
row whose regex matches the path (`re.search`). Every leaf must match some row,
and every row must match some path, else a `ValueError` names the culprits.

Fine-tuning labels are learning-rate scales, with `None` meaning frozen; the
MAML-family inner loops use the same tables with `True`/`False` (adapt or not).

    table = [(r"^head/", 1.0), (r"^block4/", 0.1), (r".*", None)]
    labels = label_params(params, table)
    print(describe(params, labels))
    trainable, frozen = split(params, labels, lambda label: label is not None)
    ... differentiate w.r.t. `trainable` only ...
    params = merge(trainable, frozen)
"""
import re
from typing import Any, Callable, Hashable, Sequence, Tuple

import jax
import numpy as np
from flax import traverse_util

from jaxtl.errors import ConfigError

PatternTable = Sequence[Tuple[str, Hashable]]


def flatten(tree) -> dict:
  """{"block1/conv/kernel": leaf, ...} of a nested dict."""
  return traverse_util.flatten_dict(tree, sep="/") if tree else {}


def unflatten(flat: dict):
  return traverse_util.unflatten_dict(flat, sep="/") if flat else {}


def param_paths(params) -> list:
  """The '/'-joined path of every leaf, in flatten order."""
  return list(flatten(params))


def label_params(params, table: PatternTable):
  """Returns a tree like `params` holding each leaf's label (first matching row wins)."""
  table = [tuple(row) for row in table]
  for row in table:
    if len(row) != 2:
      raise ConfigError(f"Pattern table rows are (regex, label) pairs; got {row!r}.")
  compiled = [(re.compile(pattern), label) for pattern, label in table]
  flat = flatten(params)
  labels, unmatched = {}, []
  for path in flat:
    for regex, label in compiled:
      if regex.search(path):
        labels[path] = label
        break
    else:
      unmatched.append(path)
  if unmatched:
    raise ConfigError(f"Parameters matched by no row of the pattern table {table}: "
                      f"{unmatched}. Add a row (for example ('.*', None)) to cover them.")
  unused = [p for p, (regex, _) in zip(table, compiled)
            if not any(regex.search(path) for path in flat)]
  if unused:
    raise ConfigError(f"Pattern(s) {[p[0] for p in unused]} match no parameter. "
                      f"Parameter paths are: {list(flat)}.")
  return unflatten(labels)


def split(params, labels, keep: Callable[[Any], bool]):
  """Splits `params` into (leaves whose label satisfies `keep`, the others), as nested dicts."""
  flat, flat_labels = flatten(params), flatten(labels)
  kept = {k: v for k, v in flat.items() if keep(flat_labels[k])}
  rest = {k: v for k, v in flat.items() if not keep(flat_labels[k])}
  return unflatten(kept), unflatten(rest)


def select(params, paths):
  """The leaves of `params` at `paths`, as a nested dict."""
  flat = flatten(params)
  return unflatten({p: flat[p] for p in paths})


def merge(*trees):
  """Inverse of `split`: the union of disjoint nested dicts."""
  flat = {}
  for tree in trees:
    flat.update(flatten(tree))
  return unflatten(flat)


def describe(params, labels) -> str:
  """A printable table: path, shape, number of values, label."""
  flat, flat_labels = flatten(params), flatten(labels)
  width = max((len(p) for p in flat), default=4)
  rows = [f"{'path':<{width}}  {'shape':<18} {'size':>9}  label"]
  for path, value in flat.items():
    shape = str(tuple(np.shape(value)))
    rows.append(f"{path:<{width}}  {shape:<18} {int(np.size(value)):>9}  {flat_labels[path]}")
  return "\n".join(rows)


def count(params) -> int:
  return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))
