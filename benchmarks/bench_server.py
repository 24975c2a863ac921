"""Load benchmark of the HTTP API: N concurrent clients for T seconds.

    python benchmarks/bench_server.py --model models/minilm-default --clients 50 --duration 60
    python benchmarks/bench_server.py --url http://127.0.0.1:8080 --clients 10 --duration 10

With ``--model`` it starts ``unembed serve`` on a free loopback port in a child process (the demo's
own limits) and stops it afterwards; with ``--url`` it uses a running server. Each client repeats
one request (``invert``: a streamed inversion of a text, read to its final event; ``encode``; or
``mixed``) until the time is up; a 503 is counted and the client waits for its Retry-After.
Prints requests/s, p50/p95/p99 latency, time to the first step, counts by outcome (5xx other than
503 separately) and the server's memory (RSS sampled from /api/health, and its peak); ``--json``
writes the same figures to a file. Only loopback addresses are used unless ``--allow-remote``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
from common import SENTENCES

log = logging.getLogger("bench_server")

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    first_step: list[float] = field(default_factory=list)  # seconds to the first step event
    outcomes: Counter = field(default_factory=Counter)  # "ok", "503", "4xx:422", "5xx:500", "conn", ...
    rss_mb: list[float] = field(default_factory=list)
    health_s: list[float] = field(default_factory=list)
    server_ms: dict[str, list[float]] = field(default_factory=dict)  # the final events' timings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="base URL of a running server")
    where.add_argument("--model", action="append", help="start `unembed serve` on this model (repeatable)")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    ap.add_argument("--mode", choices=["invert", "encode", "mixed"], default="invert")
    ap.add_argument("--strategy", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    ap.add_argument("--device", default="cpu", help="with --model: the server's device")
    ap.add_argument("--json", dest="json_out", default=None, help="write the figures to this JSON file")
    ap.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --url")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.duration <= 0:
        ap.error("--clients must be >= 1 and --duration > 0")
    if args.url and urlparse(args.url).hostname not in LOOPBACK and not args.allow_remote:
        ap.error("--url is not a loopback address (pass --allow-remote to load another machine)")
    return args


# ---- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(models: list[str], device: str, logfile) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "unembed.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--device", device]
    for m in models:
        cmd += ["--model", m]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.25)
    proc.terminate()
    raise RuntimeError("the server did not answer /api/health within 180 s")


def peak_rss_mb(pid: int) -> float | None:
    status = Path(f"/proc/{pid}/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


# ---- the clients ---------------------------------------------------------------------------------


async def one_invert(client: httpx.AsyncClient, body: dict, res: Results) -> str:
    t0 = time.perf_counter()
    async with client.stream("POST", "/api/invert", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return _status_outcome(r)
        first, name = None, None
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
                if name == "step" and first is None:
                    first = time.perf_counter() - t0
                elif name == "error":
                    return "stream-error"
            elif name == "final" and line.startswith("data:"):
                res.latencies.append(time.perf_counter() - t0)
                res.first_step.append(first if first is not None else float("nan"))
                for k, v in json.loads(line[5:])["timings"].items():
                    res.server_ms.setdefault(k, []).append(v)
                return "ok"
        return "stream-cut"


async def one_encode(client: httpx.AsyncClient, body: dict, res: Results) -> str:
    t0 = time.perf_counter()
    r = await client.post("/api/encode", json=body)
    if r.status_code != 200:
        return _status_outcome(r)
    res.latencies.append(time.perf_counter() - t0)
    return "ok"


def _status_outcome(r: httpx.Response) -> str:
    if r.status_code == 503:
        return "503"
    return f"{r.status_code // 100}xx:{r.status_code}"


async def client_loop(i: int, client: httpx.AsyncClient, args: argparse.Namespace, end: float, res: Results) -> None:
    n = i
    while time.monotonic() < end:
        text = SENTENCES[n % len(SENTENCES)]
        invert = args.mode == "invert" or (args.mode == "mixed" and n % 2 == 0)
        n += 1
        try:
            if invert:
                body = {"text": text, "seed": n % 4}
                body.update({k: v for k, v in (("strategy", args.strategy), ("num_steps", args.steps)) if v})
                outcome = await one_invert(client, body, res)
            else:
                outcome = await one_encode(client, {"text": text}, res)
        except httpx.TimeoutException:
            outcome = "timeout"
        except httpx.TransportError:
            outcome = "conn"
        res.outcomes[outcome] += 1
        if outcome == "503":
            await asyncio.sleep(min(1.0, max(end - time.monotonic(), 0)))


async def sample_health(client: httpx.AsyncClient, end: float, res: Results) -> dict:
    last: dict = {}
    while time.monotonic() < end:
        t0 = time.perf_counter()
        try:
            r = await client.get("/api/health")
            res.health_s.append(time.perf_counter() - t0)
            last = r.json()
            res.rss_mb.append(last["memory"]["rss_mb"])
        except httpx.TransportError:
            res.outcomes["health-conn"] += 1
        await asyncio.sleep(0.5)
    return last


async def run_load(url: str, args: argparse.Namespace) -> tuple[Results, dict, float]:
    res = Results()
    limits = httpx.Limits(max_connections=args.clients + 2, max_keepalive_connections=args.clients + 2)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:
        before = (await client.get("/api/health")).json()
        res.rss_mb.append(before["memory"]["rss_mb"])
        start = time.monotonic()
        end = start + args.duration
        tasks = [asyncio.create_task(client_loop(i, client, args, end, res)) for i in range(args.clients)]
        health = asyncio.create_task(sample_health(client, end, res))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
        await health
        after = (await client.get("/api/health")).json()
    return res, {"before": before, "after": after}, elapsed


# ---- the report --------------------------------------------------------------------------------------


def summarise(res: Results, health: dict, elapsed: float, args: argparse.Namespace, peak: float | None) -> dict:
    lat = np.array(res.latencies) * 1000
    first = np.array([x for x in res.first_step if x == x]) * 1000

    def pct(a: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(a, q)), 1) if len(a) else None

    five = sum(v for k, v in res.outcomes.items() if k.startswith("5xx"))
    w = health["after"]["worker"]
    return {
        "clients": args.clients,
        "duration_s": round(elapsed, 2),
        "mode": args.mode,
        "requests": sum(v for k, v in res.outcomes.items() if k != "health-conn"),
        "ok": res.outcomes["ok"],
        "requests_per_s": round(res.outcomes["ok"] / elapsed, 2),
        "latency_ms": {
            "p50": pct(lat, 50),
            "p95": pct(lat, 95),
            "p99": pct(lat, 99),
            "max": round(float(lat.max()), 1) if len(lat) else None,
        },
        "first_step_ms": {"p50": pct(first, 50), "p95": pct(first, 95)},
        "outcomes": dict(res.outcomes),
        "status_503": res.outcomes["503"],
        "status_5xx_other": five,
        "health_ms_max": round(max(res.health_s) * 1000, 1) if res.health_s else None,
        "server_rss_mb": {
            "start": res.rss_mb[0] if res.rss_mb else None,
            "max_sampled": max(res.rss_mb, default=None),
            "end": health["after"]["memory"]["rss_mb"],
            "peak": round(peak if peak is not None else health["after"]["memory"]["peak_rss_mb"], 1),
        },
        "server_timings_p50_ms": {k: pct(np.array(v), 50) for k, v in res.server_ms.items()},
        "worker": {
            "batches": w["batches"] - health["before"]["worker"]["batches"],
            "largest_batch": w["largest_batch"],
            "active_after": w["active"],
            "capacity": w["capacity"],
        },
    }


def table(s: dict) -> str:
    lat, fs, mem = s["latency_ms"], s["first_step_ms"], s["server_rss_mb"]
    rows = [
        ("clients x seconds", f"{s['clients']} x {s['duration_s']} ({s['mode']})"),
        ("requests (ok)", f"{s['requests']} ({s['ok']})"),
        ("requests/s (ok)", f"{s['requests_per_s']}"),
        ("latency p50 / p95 / p99 / max ms", f"{lat['p50']} / {lat['p95']} / {lat['p99']} / {lat['max']}"),
        ("first step p50 / p95 ms", f"{fs['p50']} / {fs['p95']}"),
        ("503 (saturated)", str(s["status_503"])),
        ("other 5xx", str(s["status_5xx_other"])),
        ("all outcomes", ", ".join(f"{k}={v}" for k, v in sorted(s["outcomes"].items()))),
        ("/api/health max ms under load", str(s["health_ms_max"])),
        ("server RSS start / max / end MB", f"{mem['start']} / {mem['max_sampled']} / {mem['end']}"),
        ("server peak RSS MB", str(mem["peak"])),
        ("batches / largest batch", f"{s['worker']['batches']} / {s['worker']['largest_batch']}"),
        ("server p50 ms (final events)", ", ".join(f"{k[:-3]} {v}" for k, v in s["server_timings_p50_ms"].items())),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    proc, logfile = None, None
    try:
        if args.model:
            logfile = tempfile.NamedTemporaryFile("w+", prefix="bench-server-", suffix=".log", delete=False)
            log.info("starting the server (log: %s)", logfile.name)
            proc, url = start_server(args.model, args.device, logfile)
        else:
            url = args.url.rstrip("/")
        log.info("%d clients for %.0f s against %s", args.clients, args.duration, url)
        res, health, elapsed = asyncio.run(run_load(url, args))
        summary = summarise(res, health, elapsed, args, peak_rss_mb(proc.pid) if proc else None)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    log.info("%s", table(summary))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=1) + "\n")
        log.info("wrote %s", args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
