"""Adapt a finished run to your own task and predict its query images (`jaxtl.adapt`):

    python -m experiments.adapt --workdir=RUN --support=DIR --query=DIR \
        [--steps=N] [--lr=X] [--polarity=auto] [--out=predictions.csv]

--support: one sub-folder per class. --query: images, or class sub-folders (the accuracy
is then printed too). Prints one line per query (or writes them to --out as CSV)."""
import sys

from absl import app, flags

from jaxtl import adapt
from jaxtl.data.images import POLARITIES
from jaxtl.errors import ConfigError
from jaxtl.runtime import quiet_libraries

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of a finished jaxtl run.")
_SUPPORT = flags.DEFINE_string("support", None, "Support set: a folder of class sub-folders "
                               "(optional for a fine-tuned run: then its own classes).")
_QUERY = flags.DEFINE_string("query", None, "Query images: a folder of images or of class "
                             "sub-folders.")
_STEPS = flags.DEFINE_integer("steps", None, "Adaptation steps (default: the run's test-time "
                              "inner steps; a linear probe's 100).")
_LR = flags.DEFINE_float("lr", None, "Adaptation step size (default: the run's).")
_POLARITY = flags.DEFINE_enum("polarity", "auto", POLARITIES, "Ink polarity of the files.")
_OUT = flags.DEFINE_string("out", "", "Write the predictions to this CSV file.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Data mirrors, read only for an old run that "
                                "did not record its input shape (default: $JAXTL_DATA_DIR, "
                                "then the run's own).")
flags.mark_flags_as_required(["workdir", "query"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  quiet_libraries()
  try:
    run = adapt.load(_WORKDIR.value, data_dir=_DATA_DIR.value)
    task = run.adapt(_SUPPORT.value, steps=_STEPS.value, lr=_LR.value, polarity=_POLARITY.value)
    predictions = task.predict(_QUERY.value)
  except ConfigError as e:  # the user's mistake: one line, no traceback
    sys.exit(f"error: {e}")
  if _OUT.value:
    predictions.to_csv(_OUT.value)
    print(f"{len(predictions.labels)} predictions written to {_OUT.value}")
  else:
    for path, label, p in zip(predictions.paths, predictions.labels, predictions.probabilities):
      print(f"{path}\t{predictions.class_names[label]}\t{p[label]:.4f}")
  if predictions.accuracy is not None:
    print(f"accuracy {predictions.accuracy:.4f} on {len(predictions.labels)} queries")


if __name__ == "__main__":
  app.run(main)
