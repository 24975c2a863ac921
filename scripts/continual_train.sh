#!/usr/bin/env bash
# The CPU's background job: continue the shipped decoder (plus its length head) on the CPU,
# resumable. Re-run the same command after any interruption: it resumes from the last save in
# runs/continual (a fresh optimizer only when that folder is gone). Low priority (nice 19) and
# 2 threads, so the machine stays usable; pause it (kill) for benchmarks.
#   START  model folder to start from (default runs/start-length: the shipped model + fitted head)
#   DATA   prepared folder (default data/minilm-sub61k)
set -euo pipefail
cd "$(dirname "$0")/.."
START="${START:-runs/start-length}"
DATA="${DATA:-data/minilm-sub61k}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000
exec nice -n 19 .venv/bin/unembed train --config small --out runs/continual --no-progress \
  "train.data=$DATA" "train.init_from=$START" model.length_head=512 \
  train.batch_size=64 train.lr=0.0001 train.warmup_steps=30 train.max_steps=20000 train.ema_decay=0.998 \
  train.eval_every=100 train.save_every=20 train.eval_batches=8 train.eval_decode_n=256 train.log_every=10 \
  train.length_reveal=0.5
