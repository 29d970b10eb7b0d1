#!/usr/bin/env bash
# Issue 30's reruns, carried across machines: a new session may start on a new machine, so
# the finished cells of the six pre-training studies are committed here
# (results/pending/pretraining_VARIANT/cells) and a later session resumes from them.
#
#   bash results/pending/resume.sh start   # worktree at the pinned commit, cells copied in, two lanes
#   bash results/pending/resume.sh save    # finished cells copied back here (then commit them)
#   bash results/pending/resume.sh land V  # a finished study V into results/, docs regenerated
#
# Every cell is keyed by its config and the library's code hash (jaxtl.cache): the lanes
# run the pinned commit's code, whatever main holds by then, and a cell of other code
# stops the study with a StaleCacheError instead of being reused. `save` leaves out the
# cells of the network a lane is working on (its other cells would come from a network
# pre-trained again); tuning candidates are whole runs and always saved.
set -euo pipefail
COMMIT=e93f7e3636d5742c6236ff5f6da70f80dbb6a837
MAIN=$(cd "$(dirname "$0")/../.." && pwd)
TREE=${TREE:-$(dirname "$MAIN")/rerun30c}
VARIANTS="mnist_diversity mnist_diversity_lpft fashion_mnist_diversity
          fashion_mnist_diversity_lpft diversity diversity_finetune mnist_labels
          fashion_mnist_labels labels"
# Where main's experiments/configs/pretraining.py has changed since the pinned commit
# (configs are not part of the code hash): the same values as flags.
# Omniglot's tuning widens a third time (MAE's mask ratio sat on 0.0625 after two).
OMNIGLOT="--config.tune.widen=3"
FLAGS_labels="--config.pretrain.clean_batch_stats=20000 $OMNIGLOT"  # every drawing, not 4 alphabets
FLAGS_diversity=$OMNIGLOT
# A diversity study's fine-tuned ends (main's diversity_finetune, VARIANT_lpft): the
# pinned config does not name them, so their study's config with main's values as flags,
# run in a copy of the finished study's workdir: its networks are reused, and only the
# fine-tuned cells are new (the flags give main's configs exactly, checked when written).
BASE_diversity_finetune=diversity
FLAGS_diversity_finetune="--config.diversity='(1,14)' --config.baselines=\"('finetune',)\" $OMNIGLOT"
BASE_mnist_diversity_lpft=mnist_diversity
BASE_fashion_mnist_diversity_lpft=fashion_mnist_diversity
ENDS="--config.diversity='(1,10)' --config.strategies=\"('linear_probe','lp_ft')\""
FLAGS_mnist_diversity_lpft=$ENDS
FLAGS_fashion_mnist_diversity_lpft=$ENDS

own() {  # own BASE CELL: whether CELL is a variant's own, not one of its base study's
  [ -z "$1" ] || ! [ -f "$MAIN/results/pending/pretraining_$1/cells/$2" -o \
                     -f "$MAIN/results/pretraining_$1/cells/$2" ]
}

lane() {  # lane CORE: each unfinished, unlocked study in order, on one core, one thread
  cd "$TREE"
  export PYTHONPATH=$TREE XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
  for v in $VARIANTS; do
    w=results/pretraining_$v
    key=BASE_$v; base=${!key:-}; key=FLAGS_$v; eval "flags=(${!key:-})"
    [ -f $w/results.json ] && continue
    [ -z "$base" ] || [ -f results/pretraining_$base/results.json ] || continue  # not yet
    mkdir runs/$v.lock 2>/dev/null || continue
    echo "$(date -u +%FT%T) lane $1: $v start" >> runs/lanes.log
    if [ -n "$base" ]; then
      mkdir -p $w
      cp -rnp results/pretraining_$base/cells results/pretraining_$base/pretrain $w/ 2>/dev/null || true
    fi
    taskset -c "$1" "$MAIN/.venv/bin/python" -m experiments.pretraining \
      --config=experiments/configs/pretraining.py:${base:-$v} --workdir=$w \
      --config.data_dir=../shared/data "${flags[@]}" >> runs/$v.log 2>&1 \
      && rc=0 || rc=$?
    echo "$(date -u +%FT%T) lane $1: $v rc=$rc" >> runs/lanes.log
    rmdir runs/$v.lock
  done
}

case "${1:-}" in
  start)
    for p in $(pgrep -f "experiments.pretraining|resume.sh lane" || true); do
      if [ "$(readlink /proc/$p/cwd)" = "$TREE" ]; then  # its locks are live: keep them
        echo "lanes already run in $TREE (pid $p); stop them first" >&2; exit 1
      fi
    done
    [ -d "$TREE" ] || git -C "$MAIN" worktree add "$TREE" $COMMIT
    mkdir -p "$TREE/runs"
    for v in $VARIANTS; do
      git -C "$TREE" rm -rq --ignore-unmatch results/pretraining_$v  # the earlier objectives' tables
      landed=$MAIN/results/pretraining_$v
      if grep -qs "\"commit\": \"$COMMIT\"" "$landed/results.json"; then  # finished here
        mkdir -p "$TREE/results/pretraining_$v"
        cp -rnp "$landed/." "$TREE/results/pretraining_$v/"
      elif [ -d "$MAIN/results/pending/pretraining_$v" ]; then
        mkdir -p "$TREE/results/pretraining_$v"
        cp -rnp "$MAIN/results/pending/pretraining_$v/." "$TREE/results/pretraining_$v/"
      fi
    done
    rm -rf "$TREE"/runs/*.lock
    for core in 0 1; do
      nohup setsid bash "$0" lane $core > /dev/null 2>&1 &
      sleep 2
    done ;;
  lane) lane "$2" ;;
  save)
    for v in $VARIANTS; do
      src=$TREE/results/pretraining_$v
      [ -d "$src/cells" ] || continue
      grep -qs "\"commit\": \"$COMMIT\"" "$MAIN/results/pretraining_$v/results.json" &&
        continue  # landed
      dst=$MAIN/results/pending/pretraining_$v
      mkdir -p "$dst/cells"
      if [ -f "$src/results.json" ]; then
        busy=""
      else  # the newest study cell's network may still owe cells
        newest=$(ls -t "$src/cells" | grep -v '^tune_' | head -1 || true)
        busy=$(echo "$newest" | cut -d_ -f1-3)
      fi
      key=BASE_$v; base=${!key:-}
      for f in "$src"/cells/*.json; do
        [ -e "$f" ] || continue
        name=$(basename "$f")
        [ -n "$busy" ] && [[ $name == "$busy"_* ]] && continue
        own "$base" "$name" && cp -p "$f" "$dst/cells/"
      done
      # A finished study lands whole as results/pretraining_$v, by hand with its docs: a
      # results.json here would be read by the report as one more run.
      [ -f "$src/results.json" ] && echo "$v finished: copy $src (cells, results.*) to" \
        "results/pretraining_$v, remove $dst, regenerate the docs" || true
    done ;;
  land)  # land VARIANT: a finished study replaces results/pretraining_VARIANT
    v=${2:?usage: $0 land VARIANT}
    src=$TREE/results/pretraining_$v
    grep -qs "\"commit\": \"$COMMIT\"" "$src/results.json" ||
      { echo "$src/results.json: no finished run stamped $COMMIT" >&2; exit 1; }
    dst=$MAIN/results/pretraining_$v
    git -C "$MAIN" rm -rq --ignore-unmatch "results/pretraining_$v" "results/pending/pretraining_$v"
    rm -rf "$dst" "$MAIN/results/pending/pretraining_$v"
    mkdir -p "$dst/cells"
    key=BASE_$v; base=${!key:-}
    for f in "$src"/cells/*.json; do
      own "$base" "$(basename "$f")" && cp -p "$f" "$dst/cells/"
    done
    cp -p "$src"/results.json "$src"/results.md "$dst/"
    [ -f "$src/results.png" ] && cp -p "$src/results.png" "$dst/"
    cd "$MAIN" && .venv/bin/python -m experiments.report --workdir=results --out=results \
      --documents > /dev/null && git checkout results/learning_curves.png \
      results/meta_accuracy_by_steps.png
    echo "landed $v: read its blocks in docs/ and results/report.md, then commit" ;;
  *) echo "usage: $0 start|save|land VARIANT" >&2; exit 2 ;;
esac
