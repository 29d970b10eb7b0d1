"""Fine-tuning strategies as pattern tables (see `jaxtl.partition`).

A strategy is a list of phases; each phase trains with one pattern table whose
labels are learning-rate scales (`None` = frozen) for some number of steps.

| strategy         | phases                                                                 |
|------------------|------------------------------------------------------------------------|
| `full`           | everything at scale 1                                                  |
| `linear_probe`   | head only (the last block: `head` in jaxtl's models)                   |
| `lp_ft`          | head only for `lp_fraction` of the steps, then everything (Kumar et al. 2022) |
| `surgical`       | only `blocks` (names, or `first` / `middle` / `last` / `head`; Lee et al. 2023) |
| `freeze_first_k` | the first `freeze_k` blocks frozen, the rest trained                   |
| `layerwise_lr`   | block scales `block_lr_scales` or `lr_decay ** (distance from head)`  |
| `l2sp`           | everything, plus `l2sp_alpha/2 ||w - w0||^2` (Li et al. 2018)         |
| `auto_rgn`       | everything, per-tensor lr scaled by relative gradient norm (`auto.py`) |
| `auto_snr`       | everything, tensors with low gradient SNR switched off (`auto.py`)     |
| `custom`         | the config's own `pattern_table`                                       |
"""
import dataclasses
from typing import Optional, Sequence, Tuple

import jax.numpy as jnp

from jaxtl import partition
from jaxtl.errors import ConfigError

STRATEGIES = ("full", "linear_probe", "lp_ft", "surgical", "freeze_first_k",
              "layerwise_lr", "l2sp", "auto_rgn", "auto_snr", "custom")
BLOCK_ALIASES = ("first", "middle", "last", "head")


@dataclasses.dataclass(frozen=True)
class Phase:
  name: str
  table: Tuple[Tuple[str, Optional[float]], ...]
  num_steps: int


def block_pattern(block: str) -> str:
  return f"^{block}/"


def resolve_blocks(blocks: Sequence[str], block_names: Sequence[str]) -> list:
  """Maps names and aliases (`first`, `middle`, `last` = last block before the head,
  `head` = the last block) to block names; `middle` is block `(n - 1) // 2` of the n
  non-head blocks."""
  body = list(block_names[:-1]) or list(block_names)
  alias = {"first": body[0], "middle": body[(len(body) - 1) // 2], "last": body[-1],
           "head": block_names[-1]}
  if isinstance(blocks, str):
    blocks = [blocks]
  blocks = [b.strip() for item in blocks for b in str(item).split(",") if b.strip()]
  if not blocks:
    raise ConfigError(f"No blocks given; valid blocks: {list(block_names)} or aliases "
                      f"{list(BLOCK_ALIASES)}.")
  out = []
  for b in blocks:
    name = alias.get(b, b)
    if name not in block_names:
      raise ConfigError(f"Unknown block {b!r}; valid blocks: {list(block_names)} or aliases "
                        f"{list(BLOCK_ALIASES)}.")
    if name not in out:
      out.append(name)
  return out


def phases(config, block_names: Sequence[str]) -> list:
  """The phases of `config.strategy` for a model with blocks `block_names` (head last)."""
  strategy, steps = config.strategy, config.num_steps
  everything = ((".*", 1.0),)
  head_only = ((block_pattern(block_names[-1]), 1.0), (".*", None))
  if strategy not in STRATEGIES:
    raise ConfigError(f"Unknown strategy {strategy!r}; valid strategies: {list(STRATEGIES)}.")
  if strategy in ("full", "l2sp", "auto_rgn", "auto_snr"):
    return [Phase(strategy, everything, steps)]
  if strategy == "linear_probe":
    return [Phase(strategy, head_only, steps)]
  if strategy == "lp_ft":
    if not 0 < config.lp_fraction < 1:
      raise ConfigError(f"lp_fraction={config.lp_fraction} must lie in (0, 1).")
    lp_steps = int(round(config.lp_fraction * steps))
    return [Phase("lp", head_only, lp_steps), Phase("ft", everything, steps - lp_steps)]
  if strategy == "surgical":
    chosen = resolve_blocks(config.blocks, block_names)
    return [Phase(strategy, tuple((block_pattern(b), 1.0) for b in chosen) + ((".*", None),),
                  steps)]
  if strategy == "freeze_first_k":
    k = config.freeze_k
    if not 0 <= k < len(block_names):
      raise ConfigError(f"freeze_k={k}; valid: 0..{len(block_names) - 1} for blocks "
                        f"{list(block_names)}.")
    table = tuple((block_pattern(b), None) for b in block_names[:k]) + ((".*", 1.0),)
    return [Phase(strategy, table, steps)]
  if strategy == "layerwise_lr":
    scales = dict(config.block_lr_scales or {})
    unknown = set(scales) - set(block_names)
    if unknown:
      raise ConfigError(f"block_lr_scales names unknown blocks {sorted(unknown)}; valid blocks: "
                        f"{list(block_names)}.")
    n = len(block_names)
    table = tuple((block_pattern(b), float(scales.get(b, config.lr_decay ** (n - 1 - i))))
                  for i, b in enumerate(block_names))
    return [Phase(strategy, table, steps)]
  # custom
  if not config.pattern_table:
    raise ConfigError("strategy='custom' needs config.pattern_table, a list of "
                      "(regex, lr_scale or None) rows.")
  table = tuple((str(p), None if s is None else float(s)) for p, s in config.pattern_table)
  return [Phase(strategy, table, steps)]


def phase_at(phase_list, step: int):
  """(index, phase, first step of that phase) of the phase that runs `step`."""
  start = 0
  for i, phase in enumerate(phase_list):
    if step < start + phase.num_steps or i == len(phase_list) - 1:
      return i, phase, start
    start += phase.num_steps
  raise ValueError("empty phase list")


def l2sp_penalty(trainable, anchor, alpha: float, beta: float):
  """L2-SP (Li et al. 2018): alpha/2 ||w - w0||^2 over leaves with a pretrained value w0
  in `anchor`, plus beta/2 ||w||^2 over the others (the re-initialised head)."""
  flat_w, flat_0 = partition.flatten(trainable), partition.flatten(anchor)
  total = jnp.zeros((), jnp.float32)
  for path, w in flat_w.items():
    if path in flat_0:
      total += 0.5 * alpha * jnp.sum(jnp.square(w - flat_0[path]))
    else:
      total += 0.5 * beta * jnp.sum(jnp.square(w))
  return total
