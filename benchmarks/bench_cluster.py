"""The Ray path on this machine: `unembed invert --vectors` in one process (before and after the
cluster code, A/B in the same run) and on a local Ray instance with 1 and 2 workers.

    python benchmarks/bench_cluster.py --baseline-src /tmp/base/src --json benchmarks/results/cluster.json

Each run is its own process writing ``--out`` (the shipped model, default decoding, batch 64) on
the first ``--n`` validation sentences' vectors. Throughput is records per second while records
are being written (from the first to the last line of the output, so Ray's and the model's start
are left out; they are reported apart as ``startup_s``); memory is the peak resident set of the
driver and of the largest worker, sampled every 50 ms. A last run with ``--big`` records on 2
workers shows that memory does not grow with the number of records.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from common import machine, markdown, write_json

from unembed.cluster import local_worker_pids


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run(src: str, vectors: Path, out: Path, extra: list[str], n: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": src}
    cmd = [sys.executable, "-m", "unembed.cli", "invert", "--vectors", str(vectors), "--out", str(out)]
    cmd += ["--no-progress", *extra]
    part = out.with_name(out.name + ".part")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    peak = {"driver": 0.0, "worker": 0.0}
    first = last = None
    lines = 0

    def watch():
        nonlocal first, last, lines
        while proc.poll() is None:
            peak["driver"] = max(peak["driver"], _rss_mb(proc.pid))
            peak["worker"] = max([peak["worker"], *(_rss_mb(p) for p in local_worker_pids())])
            f = part if part.exists() else out
            k = f.read_bytes().count(b"\n") if f.exists() else 0
            now = time.perf_counter()
            if k and first is None:
                first = (now, k)
            if k > lines:
                last, lines = (now, k), k
            time.sleep(0.05)

    w = threading.Thread(target=watch)
    w.start()
    err = proc.communicate()[1]
    w.join()
    if proc.returncode:
        raise SystemExit(f"run failed: {err[-2000:]}")
    wall = time.perf_counter() - t0
    rate = (last[1] - first[1]) / (last[0] - first[0]) if first and last and last[0] > first[0] else n / wall
    return {
        "records": n,
        "wall_s": round(wall, 1),
        "startup_s": round(first[0] - t0, 1) if first else None,
        "records_per_s": round(rate, 1),
        "driver_peak_mb": round(peak["driver"]),
        "worker_peak_mb": round(peak["worker"]) or None,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", default="data/val-cut.txt")
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--big", type=int, default=3072)
    ap.add_argument("--baseline-src", default=None, help="src/ of the code before, for the one-process A/B")
    ap.add_argument(
        "--ab-rounds",
        type=int,
        default=0,
        help="with --baseline-src: only the one-process A/B, before and now alternately, this many rounds each",
    )
    ap.add_argument("--work", default="runs/bench-cluster")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from unembed.encoders import load_encoder

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    lines = [t for t in Path(args.texts).read_text(encoding="utf-8").splitlines() if t.strip()]
    vecs = load_encoder("minilm").encode(lines[: max(args.n, args.big)])
    np.save(work / "small.npy", vecs[: args.n])
    np.save(work / "big.npy", vecs[: args.big])
    here = str(Path(__file__).resolve().parents[1] / "src")
    runs = []
    if args.ab_rounds and args.baseline_src:  # interleaved, so that a slow stretch of the host hits both
        for k in range(args.ab_rounds):  # the order alternates too: before-now, now-before, ...
            pair = [("one process (before)", args.baseline_src, "small", []), ("one process", here, "small", [])]
            runs += pair if k % 2 == 0 else pair[::-1]
    elif args.baseline_src:
        runs.append(("one process (before)", args.baseline_src, "small", []))
    runs += (
        []
        if args.ab_rounds
        else [
            ("one process", here, "small", []),
            ("ray, 1 worker", here, "small", ["--ray", "--workers", "1"]),
            ("ray, 2 workers", here, "small", ["--ray", "--workers", "2"]),
            ("ray, 2 workers", here, "big", ["--ray", "--workers", "2"]),
        ]
    )
    rows = []
    for i, (name, src, which, extra) in enumerate(runs):
        out = work / f"out-{i}.jsonl"
        out.unlink(missing_ok=True)
        n = args.n if which == "small" else args.big
        r = {"run": name, **run(src, work / f"{which}.npy", out, extra, n)}
        rows.append(r)
        print(r, file=sys.stderr)
    cols = [
        ("run", "run", "s"),
        ("records", "records", "d"),
        ("records_per_s", "records/s (writing)", ".1f"),
        ("startup_s", "start-up s", ".1f"),
        ("driver_peak_mb", "driver peak MB", "d"),
        ("worker_peak_mb", "worker peak MB", "d"),
    ]
    result = {
        "machine": machine(),
        "command": "python benchmarks/bench_cluster.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }
    write_json(args.json, result)
    print(markdown(rows, cols))
    return result


if __name__ == "__main__":
    main()
