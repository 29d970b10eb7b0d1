"""Turn the results.json files under a folder into a Markdown report with plots:

    python -m experiments.report --workdir=results [--out=DIR] [--documents]

Writes DIR/report.md (default DIR = workdir) and PNGs beside it
(`jaxtl.studies.documents.write_report`). With --workdir=results, report.md ends with
every generated table of README.md, BUILD_NOTES.md and docs/ between its `<!-- NAME -->`
markers, and --documents rewrites those blocks in the documents themselves after new
results (tests/test_results.py fails until they match).
"""
from absl import app, flags

from jaxtl.studies.documents import rewrite_blocks, write_report

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder searched for results.json files.")
_OUT = flags.DEFINE_string("out", "", "Where report.md and the plots go (default: workdir).")
_DOCUMENTS = flags.DEFINE_bool("documents", False, "Also rewrite the generated blocks of "
                               "README.md, BUILD_NOTES.md and docs/ from the workdir's results.")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    print(write_report(_WORKDIR.value, _OUT.value))
  except FileNotFoundError as e:  # no folder, or no finished run in it: say so, no traceback
    raise app.UsageError(str(e)) from e
  if _DOCUMENTS.value:
    for document in rewrite_blocks(_WORKDIR.value):
      print(f"rewrote the blocks of {document}")


if __name__ == "__main__":
  app.run(main)
