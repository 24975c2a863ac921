"""Decoding on a busy machine: batch-1 latency and batch-32 throughput of the shipped model with
0, 1 and 2 other processes spinning on the CPU, for each OpenMP thread policy, in one run.

    python benchmarks/bench_busy.py --json benchmarks/results/busy.json

A policy is a set of environment variables read when OpenMP starts, so every (policy, load)
pair runs in a fresh process: it loads the model, inverts the eight ``common.SENTENCES`` one at a
time (a warm-up round, then ``--rounds`` rounds; latency is the median over every sentence of
every round) and a batch of 32 (sentences per second, best of 3). The busy processes are plain
Python loops started before and killed after each measurement. Policies run interleaved per load
level, so a slow stretch of the host hits them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from common import machine, markdown, write_json

# name -> (environment, whether the Inverter adapts its thread count to the free cores)
POLICIES = {
    "adaptive (default)": ({}, True),
    "spin fixed": ({}, False),  # the thread count torch starts with, spinning waits
    "passive fixed": ({"OMP_WAIT_POLICY": "PASSIVE"}, False),
    "spin 10k": ({"GOMP_SPINCOUNT": "10000"}, False),
    "spin 100k": ({"GOMP_SPINCOUNT": "100000"}, False),
    "one thread": ({"OMP_NUM_THREADS": "1"}, False),
}
CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from common import SENTENCES
from unembed.inverter import Inverter
inv = Inverter.load("default")
inv.adapt_threads = sys.argv[3] == "1"
vecs = inv.encode(SENTENCES)
for v in vecs:
    inv.invert(v[None])
times = []
for _ in range(int(sys.argv[2])):
    for v in vecs:
        t = time.perf_counter(); inv.invert(v[None]); times.append(time.perf_counter() - t)
batch = vecs[[i % len(vecs) for i in range(32)]]
best = float("inf")
for _ in range(3):
    t = time.perf_counter(); inv.invert(batch, batch_size=32); best = min(best, time.perf_counter() - t)
print(json.dumps({"latency_ms": 1000 * statistics.median(times), "batch32_per_s": 32 / best}))
"""


def measure(policy: tuple[dict, bool], busy: int, rounds: int, bench_dir: str) -> dict:
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **policy[0]}
        argv = [sys.executable, "-c", CHILD, bench_dir, str(rounds), "1" if policy[1] else "0"]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode:
            raise SystemExit(f"measurement failed: {done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loads", default="0,1,2", help="numbers of busy processes")
    ap.add_argument("--policies", default="adaptive (default),spin fixed,passive fixed,one thread")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    rows = []
    for busy in [int(x) for x in args.loads.split(",")]:
        for name in args.policies.split(","):
            r = measure(POLICIES[name], busy, args.rounds, bench_dir)
            rows.append({"busy": busy, "policy": name, **r})
            print(f"busy {busy} {name:22s} {r['latency_ms']:8.1f} ms  {r['batch32_per_s']:6.1f}/s", file=sys.stderr)
    result = {"machine": machine(), "rounds": args.rounds, "rows": rows}
    cols = [
        ("busy", "busy processes", "d"),
        ("policy", "policy", "s"),
        ("latency_ms", "batch-1 ms (median)", ".1f"),
        ("batch32_per_s", "batch-32 sentences/s", ".1f"),
    ]
    print(markdown(rows, cols))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
