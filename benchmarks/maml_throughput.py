"""Meta-training throughput of second-order MAML (meta-iterations per second), jaxtl
side by side with the PyTorch peers in the same run on the same machine.

    python -m benchmarks.maml_throughput [--settings=5w1s,5w5s,20w1s] [--out=FILE.json]
        [--task_batching=auto,map] [--conv=auto,xla] [--peers=torch.func,learn2learn method]

Omniglot shapes (28x28x1), MAML's 4-conv net with stride-2 convs, random pixels
(throughput does not depend on them). jaxtl runs the exact jitted meta-step that
meta-training runs (tasks sampled on the device, `steps_per_call` iterations per
call); the peers (`benchmarks/torch_peers.py`, needs `pip install -e '.[peers]'`) run
the same network, batch and step in PyTorch. Setting by setting (so that one setting's
peers are in memory at a time), after a warm-up call each (which compiles, for jaxtl),
the methods are timed in `--repeats` rounds, each round a block of every method in turn
(A B C A B C ...); each number is the median over the rounds, with the range and every
block's rate in the JSON. With `--cpu_devices=N` the cores are N JAX devices and jaxtl
runs twice, on one device and with the meta-batch split over the N (both use all cores:
XLA's threads inside each operation, or the shards in parallel); the peers use all
cores through PyTorch's threads, as their users run them.
"""
import gc
import json

import jax
from absl import app, flags

from benchmarks.meta_step import SETTINGS, prepare, shape_of
from benchmarks.timing import interleaved, provenance, ratio_lines
from experiments.configs import meta as meta_configs
from jaxtl.runtime import log_versions
from jaxtl.sharding import check_cpu_split, split_cpu

PEERS = ("torch.func", "torch.func unfold", "torch.func unfold compiled",
         "learn2learn method", "learn2learn")
_SETTINGS = flags.DEFINE_list("settings", ["5w1s", "5w5s", "20w1s"], "Which settings.")
_BATCHING = flags.DEFINE_list("task_batching", ["auto"], "auto, vmap, map and/or unroll.")
_CONV = flags.DEFINE_list("conv", ["auto"], "Conv kernels: auto, xla and/or im2col.")
_PEERS = flags.DEFINE_list("peers", list(PEERS), f"PyTorch peers to run, of {PEERS}; "
                           "empty for none.")
_CALLS = flags.DEFINE_integer("calls", 5, "Jitted calls per timed block.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Rounds of timed blocks, the methods interleaved; "
                                "the median and range are reported.")
_STEPS_PER_CALL = flags.DEFINE_integer("steps_per_call", 10, "Meta-iterations per call.")
_PEER_CALLS = flags.DEFINE_integer("peer_calls", 3, "Peer meta-iterations per timed block.")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 0, "On CPU, more than 1: the cores as "
                                    "this many devices (`jaxtl.sharding.split_cpu`, as "
                                    "`--cpu_devices` of the experiments), and jaxtl timed "
                                    "with its meta-batch split over them too.")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")


def prepare_peer(setting: str, peer: str):
  """(row, block) of a PyTorch peer on `setting`, warmed up (see `meta_step.prepare`)."""
  from benchmarks import torch_peers  # pylint: disable=import-outside-toplevel
  config = meta_configs.get_config(SETTINGS[setting])
  block, check = torch_peers.prepare(peer, config.way, config.shot, config.meta_batch,
                                     config.inner_steps, config.inner_lr)
  return {"setting": setting, "method": peer, "first_call_seconds": None,
          "meta_gradient_error": check, **shape_of(config)}, block


def peer_cases(settings, peers) -> tuple[list, list]:
  """(row, block) for the peers that run here, and a reason for each one that does not."""
  cases, skipped = [], []
  for peer in peers:
    if peer not in PEERS:
      raise ValueError(f"Unknown peer {peer!r}; valid: {list(PEERS)}.")
    for setting in settings:
      if meta_configs.get_config(SETTINGS[setting]).model != "conv4":
        skipped.append(f"{peer} on {setting}: the peers implement the 4-conv net only")
        continue
      try:
        cases.append(prepare_peer(setting, peer))
      except ImportError as e:
        skipped.append(f"{peer}: {e}")
        break
      except AssertionError as e:  # its meta-gradient is not the reference's: not timed
        skipped.append(f"{peer} on {setting}: {e}")
  return cases, skipped


def main(argv):
  del argv
  split_cpu(_CPU_DEVICES.value)
  check_cpu_split(_CPU_DEVICES.value)
  log_versions()
  devices = sorted({1, jax.local_device_count()})
  rows, skipped = [], []
  for setting in _SETTINGS.value:  # a setting at a time: one setting's peers fit in memory
    cases = [(*prepare(setting, b, c, _STEPS_PER_CALL.value, devices=d), _CALLS.value)
             for b in _BATCHING.value for c in _CONV.value for d in devices]
    peers, not_run = peer_cases([setting], [p for p in _PEERS.value if p])
    cases += [(row, block, _PEER_CALLS.value) for row, block in peers]
    rows += interleaved(cases, _REPEATS.value)
    skipped += not_run
    del cases, peers
    gc.collect()
  device = jax.devices()[0].device_kind
  print(f"second-order MAML meta-training, {device}")
  print("| setting | tasks | inner steps | method | meta-it/s | first call (s) |")
  print("|---|---:|---:|---|---:|---:|")
  for r in sorted(rows, key=lambda r: list(SETTINGS).index(r["setting"])):
    first = "" if r["first_call_seconds"] is None else f"{r['first_call_seconds']:.1f}"
    print(f"| {r['setting']} | {r['meta_batch']} | {r['inner_steps']} | {r['method']} | "
          f"{r['meta_iterations_per_second']:.2f} | {first} |")
  ratios = ratio_lines(rows, "setting", "meta_iterations_per_second")
  print("\n".join(ratios + [f"not run: {s}" for s in skipped]))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump({"device": device, "backend": jax.default_backend(), **provenance(),
                 "results": rows, "ratios": ratios, "not_run": skipped}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
