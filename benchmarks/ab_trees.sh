#!/usr/bin/env bash
# A/B of two checkouts on one machine: each tree's own benchmark scripts on its own src, the trees
# alternating within a round (and the order swapped with ORDER=ba), so that both see the same host.
#   bash benchmarks/ab_trees.sh BASE_TREE [ROUNDS]      # BASE_TREE: e.g. a `git worktree add` of the commit before
# Writes runs/ab/{lat,b256}-{base,this}-rN.json and prints the table rows: batch-1 latency
# (bench_latency.py, int8-compact, confidence and euler) and batch-256 sentences/s (bench_inference.py).
set -euo pipefail
base="$(cd "${1:?give the base checkout}" && pwd)"; rounds="${2:-2}"
this="$(cd "$(dirname "$0")/.." && pwd)"
out="$this/runs/ab"; mkdir -p "$out"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
for round in $(seq 1 "$rounds"); do
  trees=("$base" "$this"); [ "${ORDER:-ab}" = ba ] && trees=("$this" "$base")
  for tree in "${trees[@]}"; do
    name=$([ "$tree" = "$base" ] && echo base || echo this)-r$round
    echo "== $name $(date -u +%H:%M:%S)"
    (cd "$tree" && PYTHONPATH="$tree/src" python benchmarks/bench_latency.py --variants int8-compact \
      --strategies confidence,euler --rounds 6 --json "$out/lat-$name.json") | grep -E "^\| int8"
    (cd "$tree" && PYTHONPATH="$tree/src" python benchmarks/bench_inference.py --model default \
      --variants int8-compact --strategies confidence --texts "$this/data/val-cut.txt" --batch 256 --repeats 2 \
      --json "$out/b256-$name.json") | grep -E "^\| int8-compact" | tail -1
  done
done
