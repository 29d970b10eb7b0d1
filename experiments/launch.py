"""The one `main` of every experiment: flags `--config` (an ml_collections config file,
`path[:VARIANT]`, locked) and `--workdir`, then one library call `fn(config, workdir)`.

Multi-host runs (see `jaxtl.sharding`) start the same command on every host with
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I`."""
import os
import signal
import sys
from typing import Callable

from absl import app, flags
from ml_collections import config_flags

from jaxtl.errors import ConfigError
from jaxtl.runtime import enable_compilation_cache, log_versions, quiet_libraries
from jaxtl.sharding import check_cpu_split, initialize_distributed, split_cpu

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:VARIANT]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder; rerunning a command resumes there.")
_CONFIG_HELP = flags.DEFINE_bool("config_help", False, "List every --config.FIELD of the "
                                 "config with its value and description, and exit.")
flags.mark_flags_as_required(["config"])
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "Multi-host: HOST:PORT of "
                                   "process 0, given to jax.distributed.initialize.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "Multi-host: this process's index.")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 0, "On CPU: present the cores as this many "
                                    "devices, so that --config.num_devices=0 (all) runs a "
                                    "batch's shards in parallel (meta-training is faster so "
                                    "on 2 cores); 0: JAX's default, one device.")


def _cause(e: BaseException) -> BaseException:
  """The innermost exception of a chain (a config file's own ConfigError, say)."""
  seen = []
  while e is not None and e not in seen:
    seen.append(e)
    e = e.__cause__ or e.__context__
  return seen[-1]


def _flag_error(e: Exception) -> str:
  """One line for a flag-parsing mistake: a config file's ConfigError, an unknown or
  mistyped `--config.FIELD`, a missing flag."""
  inner = _cause(e)
  if isinstance(inner, ConfigError):
    return str(inner)
  if isinstance(inner, KeyError) and inner.args:  # ml_collections: an unknown field
    field = str(inner.args[0]).splitlines()[0].strip("'\"")
    chain, x = [], e
    while x is not None and x not in chain:
      chain.append(x)
      x = x.__cause__ or x.__context__
    text = "\n".join(str(x.args[0]) if x.args else str(x) for x in chain)
    text = text.replace("\\n", "\n")  # a KeyError's repr inside another message
    hint = next((line.strip(" '\"") for line in text.splitlines() if "Did you mean" in line), "")
    hint = hint[hint.index("Did you mean"):] if hint else ""
    return (f"unknown config field {field!r}" + (f"; {hint}" if hint else "") +
            " (each config file's docstring and fields list the valid --config.FIELD names).")
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  hint = next((line for line in reversed(lines) if "Did you mean" in line), "")
  key = next((line for line in lines if "not found" in line.lower() or "key" in line.lower()),
             lines[-1] if lines else repr(e))
  text = f"{key} {hint}".strip() if hint and hint not in key else key
  return f"{text} (python -m MODULE --helpfull lists the flags; the config file's " \
         "docstring and fields list the --config.FIELD values)."


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except (flags.Error, ConfigError, KeyError, AttributeError, TypeError, ValueError) as e:
    sys.exit(f"error: {_flag_error(e)}")


def _latest_step(workdir: str):
  folder = os.path.join(workdir or "", "checkpoints")
  steps = [int(n) for n in os.listdir(folder) if n.isdigit()] if os.path.isdir(folder) else []
  return max(steps) if steps else None


def run(fn: Callable[..., object], written_to: Callable[[str], str] = lambda workdir: workdir):
  """Runs `fn(config, workdir)` as a command; `written_to(workdir)`: where it writes its
  results (default: the workdir), named in the closing summary."""
  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    quiet_libraries()
    if _CONFIG_HELP.value:
      print(config_help(_CONFIG.value, flags.FLAGS["config"].config_filename))
      return
    workdir = _WORKDIR.value
    if not workdir:
      sys.exit("error: --workdir is required (a new folder, or a run to resume).")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
      sys.exit(f"error: --workdir={workdir} is a file; give a folder (new or a run to resume).")
    # A process started in the background by a non-interactive shell (or by a test
    # runner's worker) inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: `kill -INT` would not stop the run with its resume line.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:  # both before JAX starts its backend
      split_cpu(_CPU_DEVICES.value)
      initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
      check_cpu_split(_CPU_DEVICES.value)
    except ConfigError as e:
      sys.exit(f"error: {e}")
    enable_compilation_cache()
    log_versions()
    try:
      result = fn(_CONFIG.value, workdir)
    except ConfigError as e:  # the user's mistake: one line, no traceback; bugs keep theirs
      sys.exit(f"error: {e}")
    except FloatingPointError as e:  # a diverged run: the last checkpoint is still good
      sys.exit(f"error: {e}")
    except KeyboardInterrupt:
      step = _latest_step(workdir)
      where = f"the last checkpoint is step {step}" if step is not None else "no checkpoint yet"
      sys.stderr.write(f"interrupted ({where}); the same command resumes.\n")
      sys.stderr.flush()
      os._exit(130)  # pylint: disable=protected-access  # skip orbax's exit-time noise
    print(summary(result, written_to(workdir)))

  app.run(main, flags_parser=_parse_flags)


def summary(result, workdir: str) -> str:
  """The closing lines of every command on stdout: its headline metrics (a run's test
  metrics with their 95% intervals where it has them) and the files it wrote."""
  lines = []
  if isinstance(result, dict) and any(str(k).startswith("test_") for k in result):
    for key, value in result.items():
      if (str(key).startswith("test_") and not str(key).endswith("_ci95")
          and isinstance(value, (int, float))):
        ci = result.get(f"{key}_ci95")
        lines.append(f"{key}: {value:.4f}" + (f" ± {ci:.4f} (95% CI)" if ci else ""))
  written = [n for n in ("results.json", "results.md", "results.png", "multitask.json",
                         "multitask.md") if os.path.exists(os.path.join(workdir, n))]
  lines.append(f"wrote {', '.join(os.path.join(workdir, n) for n in written)}" if written
               else f"workdir: {workdir}")
  return "\n".join(lines)


def _descriptions(paths) -> dict:
  """field name -> the comment of the line that sets it (`c.name = ...  # text`), from the
  config files: the one given and the configs it builds on."""
  import re  # pylint: disable=import-outside-toplevel
  out = {}
  for path in paths:
    with open(path) as f:
      for line in f:
        m = re.match(r"\s*((?:c(?:\.\w+)+\s*,\s*)*c(?:\.\w+)+)\s*=.*?#\s*(.+)$", line)
        if m:
          for target in m.group(1).split(","):
            out.setdefault(target.strip().split(".")[-1], m.group(2).strip())
  return out


def config_help(config, filename: str) -> str:
  """Every field of `config` (nested ones dotted) with its value and description."""
  import re  # pylint: disable=import-outside-toplevel
  path = filename.split(":")[0]
  with open(path) as f:  # the config files it builds on: `from experiments.configs import X`
    bases = re.findall(r"from experiments\.configs import (\w+)", f.read())
  described = _descriptions([path] + [os.path.join(os.path.dirname(path), f"{b}.py")
                                      for b in bases])
  lines = [f"--config fields of {filename} (set any with --config.FIELD=VALUE):"]

  def walk(node, prefix):
    for key, value in node.items():
      name = f"{prefix}{key}"
      if hasattr(value, "items") and not isinstance(value, str):
        walk(value, name + ".")
      else:
        text = described.get(key, "")
        lines.append(f"  {name} = {value!r}" + (f"  # {text}" if text else ""))
  walk(config, "")
  return "\n".join(lines)
