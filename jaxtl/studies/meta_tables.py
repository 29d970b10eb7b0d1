"""Meta-learning tables: every meta-learning run in a table, and the Omniglot grid in
MAML's Table 1 layout with the published rows above jaxtl's (`published`), plus a line
per cell saying how far jaxtl is from the paper. Lake et al.'s protocol: `lake_tables`."""
import json
import os

from jaxtl.report import find_runs, kind_of, pct
from jaxtl.studies.published import PAPER_ITERATIONS, PAPERS, PEERS, PUBLISHED_MAML


OMNIGLOT_SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))


ALGORITHM_ORDER = ("maml", "fomaml", "anil", "metasgd", "reptile", "protonet", "blackbox",
                   "relation", "pretrain")


def meta_iterations(r) -> int:
  """Meta-iterations a run trained for (0 if it did not say)."""
  return int(r["metrics"].get("meta_iterations", r.get("meta_iterations", 0)) or 0)


def meta_table(runs) -> str:
  lines = ["| run | algorithm | model | setting | meta-iterations | train time (s) | test steps "
           "| jaxtl | paper |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
  for name, r in runs:
    c, m = r["config"], r["metrics"]
    metric = "mse" if c.get("dataset") == "sinusoid" else "accuracy"
    value, ci = m.get(f"test_{metric}"), m.get(f"test_{metric}_ci95")
    if metric == "accuracy":
      shown = f"{pct(value)} +- {pct(ci)}"
      setting = f"{c['way']}-way {c['shot']}-shot"
    else:
      shown = f"{value:.3f} +- {ci:.3f} MSE"
      setting = f"sinusoid {c['shot']}-shot"
    iterations = meta_iterations(r) or ""
    published = PUBLISHED_MAML.get((c["algorithm"], c["model"], c["way"], c["shot"]), "")
    full = int(c.get("num_steps") or 0) >= PAPER_ITERATIONS and "num_steps" not in m
    # A paper's number beside a run of its length only: a short run is not comparable.
    paper = published if full else (f"({published} after {PAPER_ITERATIONS:,} it.)"
                                     if published else "")
    if "num_steps" in m:  # meta_eval of a run still in progress
      iterations = f"{iterations} of {m['num_steps']} (in progress)"
    seconds = m.get("train_seconds")
    # no inner loop (ProtoNets), or one per member (an ensemble's dict)
    steps = "" if c["algorithm"] == "protonet" else m.get("test_inner_steps")
    steps = "" if isinstance(steps, dict) else steps
    lines.append(f"| {name} | {c['algorithm']} | {c['model']} | {setting} | {iterations} | "
                 f"{'' if seconds is None else f'{seconds:.0f}'} | {steps} | {shown} | {paper} |")
  return "\n".join(lines)


def _grid_cell(r) -> str:
  m = r["metrics"]
  notes = [f"{meta_iterations(r):,} it."] if meta_iterations(r) else []
  if "num_steps" in m:
    notes = [f"{meta_iterations(r):,} of {m['num_steps']:,} it., in progress"]
  machines = [s["machine"] for s in m.get("train_segments") or [] if s["machine"]]
  notes += list(dict.fromkeys(machines))
  if m.get("train_seconds"):
    notes.append(f"{m['train_seconds'] / 60:.0f} min")
  return f"{pct(m['test_accuracy'])} +- {pct(m['test_accuracy_ci95'])} ({', '.join(notes)})"


def omniglot_cells(runs) -> dict:
  """(algorithm, model, way, shot) -> (folder, result) of the run that fills that cell of
  the Omniglot grid: a `meta_eval` re-evaluation before a training run's own test, then
  the most meta-iterations."""
  best = {}
  for name, r in runs:
    c = r["config"]
    if (kind_of(r) != "meta" or c.get("dataset") != "omniglot"
        or c.get("class_split", "maml") != "maml" or "test_accuracy" not in r["metrics"]):
      continue  # MAML's protocol only: Lake's has a table of its own
    key = (c["algorithm"], c["model"], c["way"], c["shot"])
    rank = (r.get("evaluated_by") == "experiments.meta_eval", meta_iterations(r))
    if key not in best or rank > best[key][0]:
      best[key] = (rank, (name, r))
  return {key: cell for key, (_, cell) in best.items()}


def _against(ours: float, who: str, text: str) -> str:
  """ours (%) against a published "mean" or "mean +- ci" (%)."""
  mean, _, ci = text.partition(" +- ")
  if ci and abs(ours - float(mean)) <= float(ci):
    return f"inside {who}'s interval ({text})"
  gap = ours - float(mean)
  return f"{abs(gap):.1f} points {'under' if gap < 0 else 'over'} {who}'s {text}"


def _training_log(root: str, folder: str) -> list:
  """The metrics.jsonl records of the training run in `folder` (or of the run a
  `meta_eval` folder evaluated, one level up)."""
  for path in (os.path.join(root, folder, "metrics.jsonl"),
               os.path.join(root, os.path.dirname(folder), "metrics.jsonl")):
    if os.path.exists(path):
      with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
  return []


def omniglot_gaps(root: str) -> str:
  """A line per jaxtl Omniglot cell with a published number: the gap in points (or inside
  the published interval) and the meta-iterations it trained; for a run in progress, its
  training query accuracy so far and its pace on its machine."""
  cells = omniglot_cells(find_runs(root))
  lines = []
  for key in sorted(cells, key=lambda k: (ALGORITHM_ORDER.index(k[0]), k[1], k[2], k[3])):
    algorithm, model, way, shot = key
    folder, r = cells[key]
    refs = [(PAPERS[algorithm], PUBLISHED_MAML[key])] if key in PUBLISHED_MAML else []
    refs += [(peer.split(",")[0], numbers[way, shot])
             for peer, numbers in PEERS.get((algorithm, model), {}).items()
             if "published" in peer and (way, shot) in numbers]
    if not refs:
      continue
    m = r["metrics"]
    ours = 100 * m["test_accuracy"]
    name = algorithm if model == "conv4" else f"{algorithm} {model}"
    line = (f"- {name}, {way}-way {shot}-shot: {ours:.2f} after {meta_iterations(r):,} "
            f"meta-iterations, " + "; ".join(_against(ours, who, text) for who, text in refs))
    log = _training_log(root, folder)
    if "num_steps" in m and log:  # in progress
      rate = log[-1]["meta_iterations_per_second"]
      days = (m["num_steps"] - meta_iterations(r)) / rate / 86400
      line += (f". In progress: training query accuracy {100 * log[0]['query_accuracy']:.0f}%"
               f" at {log[0]['step']:,} meta-iterations, {100 * log[-1]['query_accuracy']:.0f}%"
               f" at {log[-1]['step']:,}; {rate:.2f} meta-iterations/s, so the remaining "
               f"{m['num_steps'] - meta_iterations(r):,} would take {days:.1f} days at that pace")
    lines.append(line + ".")
  return "\n".join(lines)


def omniglot_grid(runs) -> str:
  """MAML Table 1's layout: per (algorithm, model), the published row above jaxtl's. A
  jaxtl cell is the `meta_eval` re-evaluation of a committed checkpoint where there is one
  (what a user can reproduce), else the training run's own test; between brackets the
  meta-iterations, and the machines and wall time where the run recorded them."""
  best = {key: r for key, (_, r) in omniglot_cells(runs).items()}
  if not best:
    return ""
  header = "| method | " + " | ".join(f"{w}-way {k}-shot" for w, k in OMNIGLOT_SETTINGS)
  lines = [header + " |", "|---|" + "---:|" * len(OMNIGLOT_SETTINGS)]
  rows = sorted({key[:2] for key in best},
                key=lambda am: (ALGORITHM_ORDER.index(am[0]), am[1]))
  for algorithm, model in rows:
    name = algorithm if model == "conv4" else f"{algorithm} {model}"
    published = [PUBLISHED_MAML.get((algorithm, model, w, k), "") for w, k in OMNIGLOT_SETTINGS]
    if any(published):
      lines.append(f"| {name}, published | " + " | ".join(published) + " |")
    cells = [_grid_cell(best[(algorithm, model, w, k)])
             if (algorithm, model, w, k) in best else "" for w, k in OMNIGLOT_SETTINGS]
    lines.append(f"| {name}, jaxtl | " + " | ".join(cells) + " |")
    for peer, numbers in PEERS.get((algorithm, model), {}).items():
      lines.append(f"| {name}, {peer} | "
                   + " | ".join(numbers.get(s, "") for s in OMNIGLOT_SETTINGS) + " |")
  return "\n".join(lines)
