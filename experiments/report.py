"""Turn the results.json files under a folder into a Markdown report with plots:

    python -m experiments.report --workdir=results [--out=DIR]

Writes DIR/report.md (default DIR = workdir) and PNGs beside it (see jaxtl/report.py).
With --workdir=results, report.md ends with every results table of README.md and
BUILD_NOTES.md between its `<!-- NAME -->` markers: paste a block over the one of the
same name after new results (tests/test_results.py fails until they match).
"""
from absl import app, flags

from jaxtl.report import write_report

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder searched for results.json files.")
_OUT = flags.DEFINE_string("out", "", "Where report.md and the plots go (default: workdir).")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    print(write_report(_WORKDIR.value, _OUT.value))
  except FileNotFoundError as e:  # no folder, or no finished run in it: say so, no traceback
    raise app.UsageError(str(e)) from e


if __name__ == "__main__":
  app.run(main)
