"""Lake et al.'s 20 one-shot classification runs: Omniglot's one-shot challenge exactly as
its authors score it (Lake, Salakhutdinov & Tenenbaum 2015; the 2019 progress report's
table: people 4.5% error, BPL 3.3%, Koch et al.'s siamese net 8.0%, ProtoNets 13.7%).

Each run is one 20-way 1-shot task on an evaluation alphabet: 20 of its characters, each
shown once by one drawer (the support), and the same 20 characters drawn by another
drawer as the 20 test items (the queries, one per character). Ten alphabets, two runs
each. The table below was read off `python/one-shot-classification/all_runs.zip` of
github.com/brendenlake/omniglot (MIT License, Copyright (c) 2015 Brenden Lake), commit
057f034baf2ecb8530bc5710e5a23584d2a519cc, git blob 3c49ffe2485e59b4852feb28ca9a12315d6a4ca4,
by matching each of its 800 PNGs pixel for pixel with the Omniglot mirror's 105x105
images (`read_runs`); `python -m jaxtl.data.lake_runs --all_runs=all_runs.zip
--data_dir=DIR` reads the zip again and checks it against the table. Characters are in
the runs' class order (`training/class01.png`...); drawers are drawing numbers DD of
Lake's file names `NNNN_DD.png` minus 1, as the mirror's `drawer` metadata.
"""
import functools
import io
import os
import zipfile
from typing import NamedTuple, Sequence, Tuple

import numpy as np

from jaxtl.errors import ConfigError


class LakeRun(NamedTuple):
  support_drawer: int
  query_drawer: int
  alphabet: str
  characters: Tuple[int, ...]  # NN of the alphabet's folders characterNN, in class order

  def names(self) -> Tuple[str, ...]:
    return tuple(f"{self.alphabet}/character{n:02d}" for n in self.characters)


_OCS = "Old_Church_Slavonic_(Cyrillic)"
_CHARACTERS = {
    "Atlantean": (1, 2, 3, 4, 5, 7, 8, 9, 10, 13, 14, 16, 19, 20, 21, 22, 23, 24, 25, 26),
    "Ge_ez": (1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 14, 15, 16, 17, 18, 20, 21, 23, 24, 25),
    "Glagolitic": (1, 2, 3, 5, 6, 7, 14, 17, 18, 19, 20, 21, 26, 28, 31, 34, 36, 37, 40, 43),
    "Gurmukhi": (3, 6, 7, 8, 9, 13, 14, 15, 16, 17, 31, 22, 25, 26, 29, 32, 33, 38, 43, 44),
    "Kannada": (1, 3, 5, 8, 11, 12, 13, 14, 19, 20, 21, 23, 25, 26, 27, 28, 33, 35, 40, 41),
    "Malayalam": (2, 4, 5, 9, 13, 14, 15, 16, 17, 19, 20, 21, 22, 25, 27, 29, 30, 37, 43, 46),
    "Manipuri": (3, 4, 6, 8, 9, 11, 12, 13, 15, 17, 19, 21, 22, 25, 29, 33, 35, 36, 37, 39),
    _OCS: (2, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 23, 24, 25, 30, 33, 41, 44, 45),
    "Tengwar": (1, 2, 4, 5, 7, 8, 9, 10, 11, 12, 13, 16, 18, 19, 20, 21, 22, 23, 24, 25),
    "Tibetan": (1, 2, 3, 5, 6, 7, 8, 9, 11, 13, 14, 15, 21, 22, 24, 33, 35, 36, 38, 41),
}
# (support drawer, query drawer, alphabet) of run01..run20; both runs of an alphabet
# show the same 20 characters.
_DRAWERS = [(4, 7, "Atlantean"), (2, 1, "Atlantean"), (2, 6, "Ge_ez"), (3, 1, "Ge_ez"),
            (5, 3, "Glagolitic"), (2, 1, "Glagolitic"), (4, 1, "Gurmukhi"),
            (7, 2, "Gurmukhi"), (1, 0, "Kannada"), (7, 2, "Kannada"), (2, 6, "Malayalam"),
            (3, 1, "Malayalam"), (7, 3, "Manipuri"), (6, 2, "Manipuri"), (3, 7, _OCS),
            (0, 1, _OCS), (0, 3, "Tengwar"), (7, 6, "Tengwar"), (0, 2, "Tibetan"),
            (7, 4, "Tibetan")]
RUNS = tuple(LakeRun(s, q, a, _CHARACTERS[a]) for s, q, a in _DRAWERS)
WAY = 20


DRAWERS = 8  # the runs' drawers are drawings 01..08 of each character


ALPHABETS = tuple(dict.fromkeys(r.alphabet for r in RUNS))  # in the runs' order


def tasks(drawer_pairs: str = "runs") -> Tuple[LakeRun, ...]:
  """The 20 runs (`drawer_pairs="runs"`), or each alphabet's run characters with every
  ordered pair of distinct drawers among the runs' 8 (`"all"`: 10 alphabets x 56 = 560
  tasks, alphabet by alphabet), which tells the runs' drawer pairs from pairs at random."""
  if drawer_pairs not in ("runs", "all"):
    raise ConfigError(f"drawer_pairs={drawer_pairs!r}; valid: 'runs', 'all'.")
  if drawer_pairs == "runs":
    return RUNS
  first = {r.alphabet: r for r in reversed(RUNS)}  # each alphabet's characters once
  return tuple(first[a]._replace(support_drawer=s, query_drawer=q) for a in ALPHABETS
               for s in range(DRAWERS) for q in range(DRAWERS) if s != q)


@functools.lru_cache(maxsize=None)
def alphabet_index(drawer_pairs: str = "runs") -> np.ndarray:
  """Each task's alphabet, as its index in `ALPHABETS`, in the order of `tasks`."""
  index = np.array([ALPHABETS.index(t.alphabet) for t in tasks(drawer_pairs)])
  index.setflags(write=False)  # shared by every caller (cached)
  return index


def task_table(row_names: Sequence[str], drawer_pairs: str = "runs"):
  """(classes (T, 20) int32: each task's characters (`tasks`) as rows of a class-major
  array whose row i is character `row_names[i]`; support drawers (T,); query drawers)."""
  runs = tasks(drawer_pairs)
  where = {name: i for i, name in enumerate(row_names)}
  missing = sorted({n for run in runs for n in run.names()} - set(where))
  if missing:
    raise ConfigError(f"Lake's runs are tasks on the evaluation alphabets, but "
                      f"{len(missing)} of their characters (e.g. "
                      f"{missing[0]!r}) are not among the evaluation classes: use "
                      "class_split='lake', eval_split='test', rotate_test=False and "
                      "Omniglot's mirror (source='mirror').")
  classes = np.array([[where[n] for n in run.names()] for run in runs], np.int32)
  return (classes, np.array([r.support_drawer for r in runs], np.int32),
          np.array([r.query_drawer for r in runs], np.int32))


def read_runs(zip_path: str, data_dir: str) -> Tuple[LakeRun, ...]:
  """The runs of Lake's `all_runs.zip`, each PNG found pixel for pixel among the mirror's
  105x105 evaluation images (`omniglot/omniglot_105_bits.npz` under `data_dir`)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  with np.load(os.path.join(data_dir, "omniglot", "omniglot_105_bits.npz")) as z:
    bits, labels, drawers = z["bits"], z["labels"], z["drawer"]
    names, evaluation = z["character_names"], z["split"] == 1
  row_of = {bits[i].tobytes(): i for i in np.flatnonzero(evaluation)}

  with zipfile.ZipFile(zip_path) as archive:
    def row(path):
      with archive.open(path) as f:
        image = np.array(Image.open(io.BytesIO(f.read()))).astype(bool)
      key = np.packbits(image.reshape(-1)).tobytes()
      if key not in row_of:
        raise ConfigError(f"{zip_path}: {path} is none of the mirror's evaluation images.")
      return row_of[key]

    runs = []
    folders = sorted({n.split("/")[0] for n in archive.namelist() if n.startswith("run")})
    for folder in folders:
      text = archive.read(f"{folder}/class_labels.txt").decode()
      lines = [line.split() for line in text.splitlines() if line.strip()]
      answer = dict(pair[::-1] for pair in lines)  # training/classNN.png -> its test item
      if len(answer) != len(lines):
        raise ConfigError(f"{folder}: a class has more than one test item.")
      support = [row(p) for p in sorted(answer)]       # training/classNN.png, in order
      query = [row(answer[p]) for p in sorted(answer)]  # each class's test item
      if any(labels[s] != labels[q] for s, q in zip(support, query)):
        raise ConfigError(f"{folder}: a test item's character differs from its class's.")
      run_names = [str(names[labels[s]]) for s in support]
      alphabet = run_names[0].split("/")[0]
      one = lambda values: len(set(np.asarray(values).tolist())) == 1
      if not (one([n.split("/")[0] for n in run_names]) and one(drawers[support])
              and one(drawers[query])):
        raise ConfigError(f"{folder}: not one alphabet, one support and one query drawer.")
      runs.append(LakeRun(int(drawers[support[0]]), int(drawers[query[0]]), alphabet,
                          tuple(int(n.split("character")[1]) for n in run_names)))
  return tuple(runs)


def main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  found = read_runs(flags.FLAGS.all_runs, flags.FLAGS.data_dir)
  if found != RUNS:
    raise SystemExit(f"{flags.FLAGS.all_runs} gives other runs than jaxtl's table:\n"
                     + "\n".join(map(repr, found)))
  print(f"{flags.FLAGS.all_runs}: its {len(found)} runs match jaxtl.data.lake_runs.RUNS.")


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("all_runs", "all_runs.zip", "Lake's python/one-shot-classification/"
                      "all_runs.zip (github.com/brendenlake/omniglot).")
  flags.DEFINE_string("data_dir", "../shared/data", "Folder holding omniglot/*.npz.")
  app.run(main)
