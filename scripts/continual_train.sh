#!/usr/bin/env bash
# The CPU's background job: continue the shipped decoder (plus its length head) on the CPU,
# resumable. Re-run the same command after any interruption: it resumes from the last save in
# runs/continual (a fresh optimizer only when that folder is gone). Low priority (nice 19) and
# 2 threads, so the machine stays usable; pause it (kill -INT saves first) for benchmarks and tests.
# Recipe: the winner of docs/recipes.md (t_power 0.5: more training near full masking, lr 1e-4),
# with bf16 autocast (fp32 weights; 1.3x the sequences/s of fp32 here with the same losses step for step).
#   START  model folder to start from (default models/minilm-default: the shipped decoder + head)
#   DATA   prepared folder (default data/minilm-fresh200k, made as docs/recipes.md shows)
#   RUN    run folder (default runs/continual-fresh)
# Phase 1 (runs/continual, data/minilm-sub74k: 72K training sentences, 17,100 steps, shipped on
# 2026-12-03) overfitted its slice: training loss kept falling while validation loss stalled from
# step ~7,000 (15 passes over the slice). Phase 2 continues the shipped weights on 200K sentences
# that phase 1 never saw, with the same validation rows, for 12,000 steps (3.8 passes).
# data/ and runs/ are not in git and a new checkout starts without them, so the run and its data
# live in the cache ($UNEMBED_CACHE or ~/.cache/unembed, under continual/) and are linked into the
# tree under the paths the run's config records: a later checkout on the same machine resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
START="${START:-models/minilm-default}"
DATA="${DATA:-data/minilm-fresh200k}"
RUN="${RUN:-runs/continual-fresh}"
KEEP="${UNEMBED_CACHE:-$HOME/.cache/unembed}/continual"
for p in "$DATA" "$RUN"; do
  case "$p" in /* | *..*)  # only paths inside the checkout are kept in the cache
    echo "continual_train: DATA and RUN must be relative paths inside the checkout, got: $p" >&2; exit 2 ;;
  esac
  if [ -e "$p" ] && [ ! -L "$p" ] && [ ! -e "$KEEP/$p" ]; then  # first run here: keep it in the cache
    mkdir -p "$(dirname "$KEEP/$p")" && mv "$p" "$KEEP/$p"
  fi
  if [ ! -e "$p" ] && [ -e "$KEEP/$p" ]; then
    mkdir -p "$(dirname "$p")" && ln -s "$KEEP/$p" "$p"
  fi
done
if [ -L "$RUN" ] && [ ! -e "$RUN" ]; then  # a link to a run folder that is gone
  echo "continual_train: $RUN links to $(readlink "$RUN"), which does not exist; remove the link to start a new run" >&2
  exit 2
fi
if [ ! -e "$RUN" ]; then  # a new run starts in the cache, so a later checkout finds it
  mkdir -p "$KEEP/$RUN" "$(dirname "$RUN")" && ln -sfn "$KEEP/$RUN" "$RUN"
fi
if [ ! -f "$DATA/manifest.json" ]; then
  echo "continual_train: no prepared data in $DATA; make it first (docs/recipes.md):" >&2
  echo "  make corpus && python scripts/sub_corpus.py --corpus data/corpus/builtin.jsonl --train 200000 --skip 72000 --out data/corpus/fresh200k.jsonl" >&2
  echo "  unembed prepare --source data/corpus/fresh200k.jsonl --encoder minilm --out $DATA" >&2
  exit 2
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000
exec nice -n 19 .venv/bin/unembed train --config small --out "$RUN" --no-progress \
  "train.data=$DATA" "train.init_from=$START" model.length_head=512 \
  train.batch_size=64 train.lr=0.0001 train.warmup_steps=30 train.max_steps=12000 train.ema_decay=0.998 \
  train.eval_every=150 train.save_every=150 train.save_minutes=5 train.eval_batches=8 train.eval_decode_n=256 \
  train.log_every=25 schedule.t_power=0.5 train.precision=bf16
