"""Auditing a big store by a sample, and a store of long chunks: what the audit reads, how much
memory it takes, and what its intervals say.

    python benchmarks/bench_audit_sample.py --work runs/bench-sample --json benchmarks/results/audit-sample.json

1. A Chroma collection and a .jsonl file of ``--records`` synthetic personal records
   (``records.personal_records``; MiniLM vectors with the texts), audited with
   ``unembed audit SOURCE --sample 500 --seed S`` for two seeds: peak resident memory of each run
   (Chroma reads only the sampled records; the .jsonl file is streamed a chunk at a time), the
   leak rate with its 95% interval, and whether the two seeds' intervals overlap.
2. A Chroma collection of ``--long`` chunks of 100-400 tokens: validation sentences around one
   personal record placed at a random position, audited whole: the per-length table.

Each audit runs in its own process (``/usr/bin/time`` gives its peak memory). The stores are
built once in ``--work`` and reused by a rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from common import machine, write_json

from unembed.records import personal_records


def build_stores(work: Path, n: int, n_long: int, val: Path) -> dict[str, str]:
    """The big store (Chroma and .jsonl) and the long-chunk store, each built once (a ``.done``
    file marks a finished one; an unfinished one is refused)."""
    import chromadb

    from unembed.encoders import load_encoder

    work.mkdir(parents=True, exist_ok=True)
    stores = {"chroma": f"chroma://{work / 'big'}?collection=notes", "jsonl": str(work / "big.jsonl")}
    stores["long"] = f"chroma://{work / 'long'}?collection=chunks"
    for part in ("big", "long"):
        if (work / part).exists() and not (work / f"{part}.done").is_file():
            raise SystemExit(f"{work / part} is from an unfinished build: remove it and run again")
    enc = load_encoder("minilm")
    if not (work / "big.done").is_file():
        texts = personal_records(n, seed=7)
        col = chromadb.PersistentClient(path=str(work / "big")).create_collection("notes", embedding_function=None)
        with open(work / "big.jsonl", "w", encoding="utf-8") as fh:
            for lo in range(0, n, 1024):
                part = texts[lo : lo + 1024]
                vecs = enc.encode(part)
                ids = [f"rec-{i:06d}" for i in range(lo, lo + len(part))]
                col.add(ids=ids, embeddings=vecs.tolist(), documents=part)
                fh.writelines(
                    json.dumps({"id": i, "text": t, "embedding": v.round(6).tolist()}) + "\n"
                    for i, t, v in zip(ids, part, vecs, strict=True)
                )
                print(f"  embedded {lo + len(part)}/{n}", file=sys.stderr)
        (work / "big.done").write_text("ok\n")
    if not (work / "long.done").is_file():
        sentences = [t for t in val.read_text(encoding="utf-8").splitlines() if t.strip()]
        rng = np.random.default_rng(3)
        people = personal_records(n_long, seed=8)
        chunks = []
        for i in range(n_long):
            target = int(rng.integers(100, 400))  # tokens of the encoder's tokenizer
            body = [people[i]]
            while len(enc.tokenizer.tokenize(" ".join(body))) < target:
                body.append(sentences[int(rng.integers(len(sentences)))])
            person = body.pop(0)
            body.insert(int(rng.integers(len(body) + 1)), person)
            chunks.append(" ".join(body))
        col = chromadb.PersistentClient(path=str(work / "long")).create_collection("chunks", embedding_function=None)
        ids = [f"chunk-{i:04d}" for i in range(n_long)]
        col.add(ids=ids, embeddings=enc.encode(chunks).tolist(), documents=chunks)
        (work / "long.done").write_text("ok\n")
    return stores


def audit(source: str, out: Path, extra: list[str]) -> dict:
    """One audit in its own process: its summary and peak resident memory (MB)."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "unembed.cli", "audit", source, "--out", str(out)]
    cmd += ["--no-progress", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"audit failed: {done.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) / 1024
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr).group(1)
    return {"summary": json.loads((out / "summary.json").read_text()), "peak_rss_mb": round(rss), "wall": wall}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/bench-sample")
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--sample", type=int, default=500)
    ap.add_argument("--long", type=int, default=200)
    ap.add_argument("--texts", default="data/val-cut.txt", help="sentences around the long chunks' records")
    ap.add_argument("--parts", default="sample,long", help="what to measure: sample, long or both")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    work = Path(args.work)
    stores = build_stores(work, args.records, args.long, Path(args.texts))
    parts = args.parts.split(",")
    old = json.loads(Path(args.json).read_text()) if args.json and Path(args.json).is_file() else {}
    rows = [] if "sample" in parts else old.get("sample_runs", [])  # one part alone keeps the other's figures
    for name in ("chroma", "jsonl") if "sample" in parts else ():
        for seed in (1, 2):
            out = work / f"audit-{name}-{seed}"
            if out.exists():
                subprocess.run(["rm", "-rf", str(out)], check=True)
            r = audit(stores[name], out, ["--sample", str(args.sample), "--seed", str(seed), "--entities", "regex"])
            s = r["summary"]
            leak = s["entities"]["records_leaking"]
            rows.append(
                {
                    "source": name,
                    "seed": seed,
                    "records": s["selection"]["of"],
                    "sampled": s["n"],
                    "peak_rss_mb": r["peak_rss_mb"],
                    "wall": r["wall"],
                    "leaking": leak,
                    "token_accuracy_mean": s["token_accuracy_mean"],
                    "token_accuracy_mean_ci": s["token_accuracy_mean_ci"],
                }
            )
            print(f"{name} seed {seed}: {r['peak_rss_mb']} MB, leaking {leak}", file=sys.stderr)
    a, b = rows[0]["leaking"], rows[1]["leaking"]
    overlap = a["low"] <= b["high"] and b["low"] <= a["high"]
    long = old.get("long")
    if "long" in parts:
        long_out = work / "audit-long"
        if long_out.exists():
            subprocess.run(["rm", "-rf", str(long_out)], check=True)
        lr = audit(stores["long"], long_out, ["--entities", "regex"])
        s = lr["summary"]
        long = {"peak_rss_mb": lr["peak_rss_mb"], "lengths": s["lengths"], "n": s["n"], "entities": s["entities"]}
    result = {
        "machine": machine(),
        "command": "python benchmarks/bench_audit_sample.py " + " ".join(argv or sys.argv[1:]),
        "sample_runs": rows,
        "seeds_overlap": overlap,
        "long": long,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
