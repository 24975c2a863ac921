"""The HTTP API over real HTTP: uvicorn on a free port, the tiny random model, the real MiniLM encoder."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from unembed.inverter import Inverter
from unembed.sampling import STRATEGIES
from unembed.server import create_app, serve_in_thread

TEXT = "The quick brown fox jumps over the lazy dog."


# ---- helpers ---------------------------------------------------------------------------------------


def read_events(response: httpx.Response) -> list[tuple[str, dict]]:
    """Parse an SSE body into (event name, JSON data) pairs."""
    events, name, data = [], None, []
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and name is not None:
            events.append((name, json.loads("\n".join(data))))
            name, data = None, []
    return events


def invert(client: httpx.Client, **body) -> tuple[int, list[tuple[str, dict]]]:
    with client.stream("POST", "/api/invert", json=body) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, [("http-error", r.json())]
        assert r.headers["content-type"].startswith("text/event-stream")
        return 200, read_events(r)


def clone(inv: Inverter, cls: type[Inverter], **attrs) -> Inverter:
    """The same loaded model and encoder, with another stream() behaviour."""
    out = cls(inv.cfg, inv.model, inv.tokenizer, name=inv.name, device="cpu", encoder=inv.encoder)
    for k, v in attrs.items():
        setattr(out, k, v)
    return out


class SlowInverter(Inverter):
    """Sleeps ``delay`` after each forward pass and counts them (to watch cancellation)."""

    delay = 0.1

    def stream(self, *args, **kwargs):
        self.produced = 0
        for state in super().stream(*args, **kwargs):
            time.sleep(self.delay)
            self.produced += 1
            yield state


class FailingInverter(Inverter):
    """Fails after ``fail_after`` forward passes."""

    fail_after = 2

    def stream(self, *args, **kwargs):
        for state in super().stream(*args, **kwargs):
            if state.step > self.fail_after:
                raise RuntimeError("simulated device failure")
            yield state


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# ---- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inverter(tiny_model_dir) -> Inverter:
    # fp32: only full precision keeps a row bit-identical across batch sizes (int8 scales its
    # activations per batch), which the batching tests below compare against.
    inv = Inverter.load(str(tiny_model_dir), sample={"precision": "fp32"})
    inv.encoder  # noqa: B018  (load the encoder once for the module)
    return inv


@pytest.fixture(scope="module")
def server(inverter):
    with serve_in_thread(create_app({inverter.name: inverter})) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client


# ---- the happy paths ---------------------------------------------------------------------------------


def test_health_and_models(server, inverter):
    health = server.get("/api/health").json()
    assert health["status"] == "ok" and health["models"] == [inverter.name]
    assert health["worker"]["capacity"] == 64 and health["memory"]["peak_rss_mb"] > 0
    (info,) = server.get("/api/models").json()["models"]
    assert info == {
        "name": inverter.name,
        "encoder": "minilm",
        "dim": 384,
        "vocab_size": inverter.cfg.model.vocab_size,
        "seq_len": inverter.cfg.model.seq_len,
        "strategies": list(STRATEGIES),
        "default_strategy": inverter.cfg.sample.strategy,
        "default_num_steps": inverter.cfg.sample.num_steps,
        "eos_id": inverter.cfg.model.eos_id,
        "pad_id": inverter.cfg.model.pad_id,
    }


def test_encode(server, inverter):
    r = server.post("/api/encode", json={"text": TEXT})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dim"] == 384 == len(body["embedding"]) and body["model"] == inverter.name
    np.testing.assert_allclose(body["embedding"], inverter.encode([TEXT])[0], atol=1e-6)
    assert abs(body["norm"] - 1.0) < 1e-4
    assert body["tokens"][:3] == ["the", "quick", "brown"] and body["truncated"] is False
    assert server.post("/api/encode", json={"text": "word " * 100}).json()["truncated"] is True


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_invert_text_streams_each_step_and_matches_the_cli(server, inverter, strategy):
    steps = 5  # does not divide seq_len 16
    status, events = invert(server, text=TEXT, strategy=strategy, num_steps=steps, seed=3)
    assert status == 200
    names = [n for n, _ in events]
    assert names == ["step"] * steps + ["final"]
    L = inverter.cfg.model.seq_len
    for i, (_, ev) in enumerate(events[:-1], 1):
        assert ev["step"] == i and ev["num_steps"] == steps
        assert len(ev["ids"]) == len(ev["tokens"]) == len(ev["states"]) == len(ev["confidence"]) == L
    first, last = events[0][1], events[steps - 1][1]
    assert set(first["states"]) <= {"masked", "new"}
    assert "masked" not in last["states"] and "remasked" not in last["states"]
    final = events[-1][1]
    vec = inverter.encode([TEXT])
    expected = inverter.invert(vec, strategy, steps, seed=3)[0]
    assert final["text"] == expected.text and final["ids"] == expected.ids == last["ids"]
    score = inverter.score([TEXT], [expected], vec)[0]
    assert final["token_accuracy"] == pytest.approx(score["token_accuracy"])
    assert final["cosine"] == pytest.approx(score["cosine"], abs=1e-5)
    assert final["input_text"] == TEXT and final["strategy"] == strategy and final["seed"] == 3
    assert final["timings"]["total_ms"] >= final["timings"]["denoise_ms"] > 0


def test_final_text_equals_cli_output(server, inverter, tiny_model_dir, capsys):
    from unembed.cli import main

    assert (
        main(
            ["invert", "--model", str(tiny_model_dir), "--text", TEXT, "--json", "--steps", "4", "--seed", "7"]
            + ["--precision", "fp32"]  # the server's inverter is fp32 (fixture above); the CLI's default is int8
        )
        == 0
    )
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _, events = invert(server, text=TEXT, num_steps=4, seed=7)
    assert events[-1][0] == "final"
    assert events[-1][1]["text"] == cli["text"]
    assert events[-1][1]["token_accuracy"] == pytest.approx(cli["token_accuracy"])


def test_invert_raw_vector(server, inverter):
    vec = np.random.default_rng(0).standard_normal(384) * 3.0  # any scale: the server normalises
    status, events = invert(server, embedding=vec.tolist())
    assert status == 200 and [n for n, _ in events].count("step") == inverter.cfg.sample.num_steps
    final = events[-1][1]
    assert final["text"] == inverter.invert(vec)[0].text
    assert final["token_accuracy"] is None and final["input_text"] is None
    assert final["timings"]["encode_ms"] == 0.0 and -1.0 <= final["cosine"] <= 1.0


def test_page_and_static_files(server):
    r = server.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert 'id="grid"' in r.text and "/static/app.js" in r.text and "http" not in r.text.split("<body>")[0]
    for name in ("app.js", "style.css"):
        assert server.get(f"/static/{name}").status_code == 200
    api = server.get("/openapi.json").json()
    assert api["paths"].keys() >= {"/api/health", "/api/models", "/api/invert", "/api/encode"}
    assert {"StepEvent", "FinalEvent", "ErrorEvent", "InvertRequest"} <= api["components"]["schemas"].keys()
    assert server.get("/docs").status_code == 200


# ---- bad input: every class is a 4xx with a message ------------------------------------------------------


def _vec(n=384, value=0.1):
    return [value] * n


BAD_INVERT = {
    "empty text": ({"text": ""}, 422),
    "blank text": ({"text": "   \n"}, 422),
    "text too long": ({"text": "a" * 2001}, 422),
    "text not a string": ({"text": 5}, 422),
    "neither text nor embedding": ({"strategy": "confidence"}, 422),
    "both text and embedding": ({"text": "hi", "embedding": _vec()}, 422),
    "wrong dimension": ({"embedding": _vec(383)}, 422),
    "empty embedding": ({"embedding": []}, 422),
    "non-numeric embedding": ({"embedding": ["a"] * 384}, 422),
    "zero vector": ({"embedding": _vec(value=0.0)}, 422),
    "unknown strategy": ({"text": "hi", "strategy": "beam"}, 422),
    "zero steps": ({"text": "hi", "num_steps": 0}, 422),
    "too many steps": ({"text": "hi", "num_steps": 17}, 422),
    "negative seed": ({"text": "hi", "seed": -1}, 422),
    "unknown field": ({"text": "hi", "temprature": 1}, 422),
    "unknown model": ({"text": "hi", "model": "nope"}, 404),
    "not an object": ([1, 2], 422),
}


@pytest.mark.parametrize("case", list(BAD_INVERT))
def test_bad_invert_requests(server, case):
    body, status = BAD_INVERT[case]
    r = server.post("/api/invert", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and r.json()["error"]


@pytest.mark.parametrize(
    "raw, what",
    [
        (b'{"embedding": [NaN' + b", 0.1" * 383 + b"]}", "finite"),
        (b'{"embedding": [Infinity' + b", 0.1" * 383 + b"]}", "finite"),
        (b'{"embedding": [1e400' + b", 0.1" * 383 + b"]}", "finite"),
    ],
)
def test_non_finite_vectors(server, raw, what):
    r = server.post("/api/invert", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and what in r.json()["error"]


@pytest.mark.parametrize(
    "body, status",
    [
        ({"text": ""}, 422),
        ({"text": "x" * 2001}, 422),
        ({}, 422),
        ({"text": "hi", "model": "nope"}, 404),
        ({"text": "hi", "extra": 1}, 422),
    ],
)
def test_bad_encode_requests(server, body, status):
    r = server.post("/api/encode", json=body)
    assert r.status_code == status and r.json()["error"]


def test_malformed_json_and_oversized_bodies(server):
    r = server.post("/api/invert", content=b'{"text": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    big = json.dumps({"text": "a" * 1_100_000}).encode()
    r = server.post("/api/invert", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]

    def chunks():  # no Content-Length: counted while reading
        for _ in range(40):
            yield b" " * 50_000

    r = server.post("/api/encode", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert server.get("/api/nothing-here").status_code == 404
    assert server.get("/api/invert").status_code == 405


def test_origin_must_match_exactly(server):
    own = str(server.base_url).rstrip("/")
    ok = server.post("/api/encode", json={"text": "hi"}, headers={"origin": own})
    assert ok.status_code == 200
    for origin in (own + ".evil.example", own.replace("127.0.0.1", "127.0.0.10"), "null", "http://evil.example"):
        r = server.post("/api/encode", json={"text": "hi"}, headers={"origin": origin})
        assert r.status_code == 403 and "origin" in r.json()["error"], origin


# ---- the worker: batching, saturation, cancellation, failure ------------------------------------------------


def test_concurrent_inversions_are_batched(inverter):
    app = create_app({inverter.name: inverter}, batch_window_s=0.5)
    texts = ["a cat sat on the mat", "rain falls in spain", "hello there", "numbers like 42 and 7"]
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        with ThreadPoolExecutor(len(texts)) as pool:
            results = list(pool.map(lambda t: invert(client, text=t, strategy="confidence"), texts))
        assert wait_for(lambda: client.get("/api/health").json()["worker"]["active"] == 0)
        stats = client.get("/api/health").json()["worker"]
    assert stats["largest_batch"] >= 2 and stats["finished"] == len(texts) and stats["cancelled"] == 0
    assert max(events[-1][1]["batch_size"] for _, events in results) >= 2
    alone = [inverter.invert(inverter.encode([t]), "confidence")[0].text for t in texts]  # as `unembed invert`
    assert [events[-1][1]["text"] for _, events in results] == alone


@pytest.mark.parametrize("strategy", ["euler", "remask"])
def test_random_strategies_batch_with_a_generator_per_request(inverter, strategy):
    """Concurrent euler/remask requests with different seeds share a batch, and each still gets
    exactly what it gets alone with its seed (as `unembed invert --seed`)."""
    app = create_app({inverter.name: inverter}, batch_window_s=0.5)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda s: invert(client, text=TEXT, strategy=strategy, seed=s), [1, 2, 3]))
    vec = inverter.encode([TEXT])
    assert max(events[-1][1]["batch_size"] for _, events in results) >= 2
    texts = [events[-1][1]["text"] for _, events in results]
    for seed, text in zip([1, 2, 3], texts, strict=True):
        assert text == inverter.invert(vec, strategy, seed=seed)[0].text


def test_saturated_server_answers_503(inverter):
    slow = clone(inverter, SlowInverter, delay=0.1)
    app = create_app({slow.name: slow}, max_jobs=2, max_batch=1, retry_after_s=3)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        with (
            client.stream("POST", "/api/invert", json={"text": TEXT, "num_steps": 16}) as a,
            client.stream("POST", "/api/invert", json={"text": TEXT, "num_steps": 16}) as b,
        ):
            assert a.status_code == b.status_code == 200
            for r in (client.post("/api/invert", json={"text": TEXT}), client.post("/api/encode", json={"text": "x"})):
                assert r.status_code == 503 and r.headers["retry-after"] == "3" and "busy" in r.json()["error"]
        assert wait_for(lambda: client.get("/api/health").json()["worker"]["active"] == 0)
        assert client.post("/api/encode", json={"text": "x"}).status_code == 200


def test_disconnect_mid_stream_frees_the_work(inverter):
    slow = clone(inverter, SlowInverter, delay=0.15)
    app = create_app({slow.name: slow}, max_jobs=1)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        with client.stream("POST", "/api/invert", json={"text": TEXT, "num_steps": 16}) as r:
            lines = r.iter_lines()
            assert next(lines) == "event: step"
        # the connection is closed here, after one step of 16
        assert wait_for(lambda: client.get("/api/health").json()["worker"]["active"] == 0, timeout=5)
        stats = client.get("/api/health").json()["worker"]
        assert stats["cancelled"] == 1 and stats["finished"] == 0
        assert slow.produced < 16
        status, events = invert(client, text=TEXT, num_steps=2)  # the single slot is free again
        assert status == 200 and events[-1][0] == "final"


def test_failure_mid_stream_sends_an_error_event(inverter):
    failing = clone(inverter, FailingInverter, fail_after=2)
    app = create_app({failing.name: failing})
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        status, events = invert(client, text=TEXT, num_steps=4)
        assert status == 200
        assert [n for n, _ in events] == ["step", "step", "error"]
        assert "simulated device failure" in events[-1][1]["message"]
        assert wait_for(lambda: client.get("/api/health").json()["worker"]["active"] == 0)


def test_serve_in_thread_stops_cleanly(inverter):
    before = threading.active_count()
    with serve_in_thread(create_app({inverter.name: inverter})) as url:
        assert httpx.get(url + "/api/health").status_code == 200
    assert wait_for(lambda: threading.active_count() <= before)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/api/health")


def test_host_allowlist_stops_dns_rebinding(inverter):
    app = create_app({inverter.name: inverter}, allowed_hosts=("127.0.0.1", "localhost"))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.get("/api/health").status_code == 200
        r = client.get("/api/health", headers={"host": "attacker.example:8080"})
        assert r.status_code == 400 and "host" in r.json()["error"]


def test_cli_serve_binds_loopback_and_logs_the_address(tiny_model_dir):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "unembed.cli", "serve", "--model", str(tiny_model_dir), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return proc.poll() is not None

        assert wait_for(up, timeout=120) and proc.poll() is None
        assert httpx.get(f"http://127.0.0.1:{port}/api/models").json()["models"][0]["name"] == tiny_model_dir.name
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out


# ---- the known-value attack ------------------------------------------------------------------------


def test_identify_ranks_a_pasted_list_and_a_builtin_one(server, inverter, tmp_path, monkeypatch):
    monkeypatch.setenv("UNEMBED_CACHE", str(tmp_path))
    names = ["Joan Banks", "Peter Olsen", "Maria Garcia", "Wei Chen"]
    r = server.post(
        "/api/identify", json={"text": "Patient Joan Banks reports chest pain.", "candidates": names, "type": "person"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "pasted list" and body["list_size"] == 4 and body["model"] == inverter.name
    top = body["candidates"]
    assert top[0]["value"] == "Joan Banks" and top[0]["type"] == "person" and len(top) == 4
    assert [c["probability"] for c in top] == sorted((c["probability"] for c in top), reverse=True)
    assert not list(tmp_path.glob("candidates/*"))[4:]  # pasted lists are not cached (only decoys are)
    vec = inverter.encode(["Maria Garcia moved to Denver."])[0].tolist()
    r = server.post("/api/identify", json={"embedding": vec, "builtin": "first-names", "top_k": 3})
    assert r.status_code == 200, r.text
    assert r.json()["candidates"][0]["value"] == "Maria" and r.json()["source"].startswith("builtin:first-names")


@pytest.mark.parametrize(
    "body, message",
    [
        ({"text": "hi"}, "exactly one of 'candidates' or 'builtin'"),
        ({"text": "hi", "candidates": ["a"], "builtin": "countries"}, "exactly one of 'candidates' or 'builtin'"),
        ({"candidates": ["a"]}, "exactly one of 'text' or 'embedding'"),
        ({"text": "hi", "candidates": []}, "at least 1 item"),
        ({"text": "hi", "candidates": ["x" * 301]}, "at most 300 characters"),
        ({"text": "hi", "candidates": ["a"] * 10_001}, "at most 10000 items"),
        ({"text": "hi", "builtin": "nope"}, "builtin"),
        ({"text": "hi", "candidates": ["a"], "top_k": 0}, "greater than or equal to 1"),
        ({"embedding": [0.1] * 5, "candidates": ["a"]}, "dimension 384"),
        ({"text": "hi", "candidates": ["  "]}, "no candidate values"),
    ],
)
def test_identify_refuses_bad_requests_with_422(server, body, message):
    r = server.post("/api/identify", json=body)
    assert r.status_code == 422, r.text
    assert message in r.text
