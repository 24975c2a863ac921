#!/usr/bin/env bash
# The CPU's background job: continue the decoder (plus its length head) on the CPU, resumable.
# Re-run the same command after any interruption: it resumes where it stopped, whether that was
# in building its data (the corpus slice and `unembed prepare`, which resumes chunk by chunk) or in
# training (from the last save in the run folder; a fresh optimizer only when that folder is new).
# Low priority (nice 19) and 2 threads, so the machine stays usable; pause it (kill -STOP/-CONT,
# or kill -INT, which saves first) for benchmarks and tests.
# Recipe: the winner of docs/recipes.md (t_power 0.5: more training near full masking, cosine lr),
# with bf16 autocast (fp32 weights; 1.3x the sequences/s of fp32 here, same losses).
#   LR, WARMUP  peak learning rate and warm-up steps (default 3e-5 and 300: phase 2 ended annealed
#          at 1.1e-5, and re-warming it to phases 1-2's 1e-4 in 30 steps put its validation loss
#          up from 2.4366 to 2.5112 within 150 steps; the model card has the figures). A run resumes
#          only with the LR and WARMUP it started with (the trainer refuses a changed config).
#   START  model folder to start from (default runs/continual-fresh: phase 2's best EMA; on a
#          machine without that run, START=models/minilm-default, the shipped model)
#   DATA   prepared folder (default data/minilm-fresh3), built here when missing from
#   SKIP   ... the corpus slice `scripts/sub_corpus.py --train 200000 --skip SKIP` (default 272000)
#   RUN    run folder (default runs/continual-3)
# Phases (model card, "Continual training on the CPU"): phase 1 (runs/continual, data/minilm-sub74k:
# the first 72K shuffled training sentences) overfitted its slice after ~15 passes; phase 2
# (runs/continual-fresh, data/minilm-fresh200k: the next 200K, --skip 72000) ran 12,000 steps
# (3.8 passes); phase 3 (these defaults) continues phase 2's best on the next 200K (--skip 272000),
# which neither earlier phase saw. Every phase keeps the same 2,048 validation sentences.
# data/ and runs/ are not in git and a new checkout starts without them, so the run and its data
# live in the cache ($UNEMBED_CACHE or ~/.cache/unembed, under continual/) and are linked into the
# tree under the paths the run's config records: a later checkout on the same machine resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
START="${START:-runs/continual-fresh}"
DATA="${DATA:-data/minilm-fresh3}"
SKIP="${SKIP:-272000}"
RUN="${RUN:-runs/continual-3}"
LR="${LR:-0.00003}"
WARMUP="${WARMUP:-300}"
KEEP="${UNEMBED_CACHE:-$HOME/.cache/unembed}/continual"
for p in "$START" "$DATA" "$RUN"; do  # checked before anything is linked or moved
  case "$p" in /* | *..*)  # only paths inside the checkout are kept in the cache
    echo "continual_train: START, DATA and RUN must be relative paths inside the checkout, got: $p" >&2; exit 2 ;;
  esac
done
if [ ! -e "$START" ] && [ -f "$KEEP/$START/config.json" ]; then  # an earlier phase's run, kept in the cache
  mkdir -p "$(dirname "$START")" && ln -s "$KEEP/$START" "$START"
fi
if [ ! -f "$START/config.json" ]; then
  echo "continual_train: no model in START=$START (on a new machine: START=models/minilm-default)" >&2
  exit 2
fi
for p in "$DATA" "$RUN"; do
  if [ -e "$p" ] && [ ! -L "$p" ] && [ ! -e "$KEEP/$p" ]; then  # first run here: keep it in the cache
    mkdir -p "$(dirname "$KEEP/$p")" && mv "$p" "$KEEP/$p"
  fi
  if [ -L "$p" ] && [ ! -e "$p" ]; then  # a link to a folder that is gone
    echo "continual_train: $p links to $(readlink "$p"), which does not exist; remove the link to start anew" >&2
    exit 2
  fi
  if [ ! -e "$p" ]; then  # kept in the cache (a new one starts there), so a later checkout finds it
    mkdir -p "$KEEP/$p" "$(dirname "$p")" && ln -s "$KEEP/$p" "$p"
  fi
done
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
if ! grep -qs '"complete": true' "$DATA/manifest.json"; then  # build (or resume building) the data
  [ -f data/corpus/builtin.jsonl ] || make corpus
  slice="data/corpus/slice-$SKIP.jsonl"  # deterministic: the same file on every rerun
  [ -f "$slice" ] || .venv/bin/python scripts/sub_corpus.py --corpus data/corpus/builtin.jsonl \
    --train 200000 --skip "$SKIP" --out "$slice"
  nice -n 19 .venv/bin/unembed prepare --source "$slice" --encoder minilm --out "$DATA" --no-progress
fi
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000
exec nice -n 19 .venv/bin/unembed train --config small --out "$RUN" --no-progress \
  "train.data=$DATA" "train.init_from=$START" model.length_head=512 \
  train.batch_size=64 "train.lr=$LR" "train.warmup_steps=$WARMUP" train.max_steps=12000 train.ema_decay=0.998 \
  train.eval_every=150 train.save_every=150 train.save_minutes=5 train.eval_batches=8 train.eval_decode_n=256 \
  train.log_every=25 schedule.t_power=0.5 train.precision=bf16
