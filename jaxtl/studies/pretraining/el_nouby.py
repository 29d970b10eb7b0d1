"""El-Nouby et al.'s claim (2021), stated before the data: on narrow pre-training data the
masked objective degrades least. `answers.diversity` judges it on a study's drops by the
one symmetric rule (`jaxtl.stats.compare`), and says where the comparison with the paper
is not like for like (frozen features, where they fine-tune)."""
import numpy as np

from jaxtl import stats
from jaxtl.studies.pretraining.tables import LABEL_FREE, setting_strategy


def theirs(objectives, by=None) -> str:
  """["rotation", "simclr"] -> "rotation's and simclr's"; with `by` (a `stats.Comparison`
  in points), each followed by its difference and one-sided Holm p."""
  names = [f"{o}'s" + (f" (by {by.diffs[o].mean:.1f} points, one-sided Holm p = "
                       f"{by.up[o]:.2g})" if by else "") for o in objectives]
  return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def claim(summary, drops, learnt, idle) -> str:
  """El-Nouby et al.'s claim, stated before the data (the masked objective degrades
  least), by the one symmetric rule (`stats.compare`, `stats.verdict`'s core): one-sided
  paired tests of the masked autoencoder's drop against each other objective that learnt,
  Holm, in both directions, a point's margin; and whether every transfer scored frozen
  features, where they fine-tune."""
  pattern = "El-Nouby et al.'s pattern (the masked objective degrades least)"
  rivals = [o for o in learnt if o != "mae"]
  if "mae" not in drops:
    return f" The masked autoencoder was not run, so {pattern} is untested."
  # Retention (minus the drop, in points) is the row; a margin of one point.
  c = stats.compare({o: -drops[o][0] for o in drops}, "mae", rivals, margin=1.0,
                    crossed=True) if (
      rivals) else None
  if "mae" in idle:
    text = (f" The masked autoencoder is not ahead of no pre-training on the most diverse "
            f"data, so {pattern} is untested here: it needs a masked objective that learnt.")
    mean = {o: np.mean(d[0]) for o, d in drops.items() if o in LABEL_FREE}
    if c and c.label == "not reproduced":  # which way the data lean, by the same rule
      text += (f" Its drop is larger than {theirs(c.better, c)}: the data lean against "
               "the pattern.")
    elif len(mean) > 1 and max(mean, key=mean.get) == "mae":
      text += " By the means alone its drop is the largest, so nothing leans towards it."
  elif not rivals:
    text = f" No other label-free objective learnt, so {pattern} is untested here."
  elif c.label == "reproduced":
    text = (f" The masked autoencoder degrades less than {', '.join(rivals)}, beyond the "
            "one-sided paired intervals (Holm): El-Nouby et al.'s pattern, seen here too.")
  elif c.label == "not reproduced":
    text = (f" The masked autoencoder's drop is larger than {theirs(c.better, c)}, so "
            f"{pattern} does not appear here.")
  elif c.label == "not distinguishable":
    text = (f" The masked autoencoder's drop is within a point of {theirs(rivals)} "
            f"(paired intervals), so {pattern} does not appear here: they degrade alike.")
  else:
    text = (f" The masked autoencoder's drop is not told apart from {theirs(rivals)} "
            f"(one-sided, Holm), so {pattern} is not told apart here.")
  settings = next(iter(summary.get("mae", {}).values()), {})
  if _frozen(settings):
    present = {setting_strategy(s) for s in settings}
    used = [name for key, name in STRATEGY_PLURALS.items() if key in present]
    used = f" ({', '.join(used)})" if used else ""
    text += (f" Every transfer here scored frozen features{used}, where "
             "El-Nouby et al. fine-tune, so the comparison with them holds for frozen "
             "features.")
  return text


# The frozen-feature transfers (every strategy but fine-tuning), as the answers name them.
STRATEGY_PLURALS = {"ncm": "nearest class means", "linear_probe": "linear probes",
                    "cosine": "Baseline++ heads"}


def _frozen(settings) -> bool:
  """Whether no setting fine-tunes the pre-trained network."""
  return not any(setting_strategy(s) in ("finetune", "lp_ft") for s in settings)
