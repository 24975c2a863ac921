"""Audits of real vector stores that the tests create: Chroma, LanceDB, Qdrant (local), FAISS,
Milvus Lite and a PostgreSQL server started from Debian's binaries.

Each store holds real MiniLM vectors of the same sentences with their texts; the audit must bring
back every record with its id and measure leakage against the stored texts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import decoding
from unembed import audit, stores
from unembed.inverter import Inverter

SENTENCES = [
    "Maria Lopez moved to Boston in March 2019.",
    "Call me at 555-123-4567 after six.",
    "Please email john.smith@example.com with the invoice.",
    "The rent went up by $1,200 last year.",
    "Our office is at 42 Elm Street in Springfield.",
    "Dr. Ahmed Khan works at the Mayo Clinic.",
    "The meeting moved to Thursday, June 5.",
    "Visit https://example.org/jobs for the opening.",
    "Apple opened a new store in Paris on Friday.",
    "She paid 350 euros for the flight to Berlin.",
    "The weather is lovely today.",
    "A dog ran across the busy street.",
    "She reads a book every night before bed.",
    "The train was late again this morning.",
    "We planted tomatoes in the garden.",
    "Coffee prices rose sharply last year.",
    "My password is written on a sticky note.",
    "The children played in the park until dark.",
    "He fixed the old bicycle with a new chain.",
    "The museum closes early on Sundays.",
    "Barack Obama spoke at Harvard University in 2016.",
    "Send the report to Sarah by Monday morning.",
    "The package weighed about 12 pounds.",
    "Toyota recalled 40,000 cars in Japan.",
    "The bakery on the corner sells fresh bread.",
    "They watched the sunset from the pier.",
    "Our flight to Tokyo leaves at 9 pm.",
    "The river flooded the village in April.",
    "John Williams was born on 4 July 1982.",
    "The library lends laptops to students.",
    "A storm knocked out power across Texas.",
    "Her new phone number is +1 212 555 0199.",
]
IDS = [f"doc-{i:02d}" for i in range(len(SENTENCES))]
INT_IDS = list(range(100, 100 + len(SENTENCES)))
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SECRET = "s3cret-Pa55word"


@pytest.fixture(scope="module")
def vectors(minilm_encoder):
    return minilm_encoder.encode(SENTENCES)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir, minilm_encoder):
    return Inverter.load(str(tiny_model_dir), encoder=minilm_encoder).tokenizer


def run(tiny_model_dir, minilm_encoder, source, out, **kw):
    kw = {"num_steps": 2, "batch_size": 16, "chunk_size": 8, "progress": False, **kw}
    return audit.run_audit(
        str(source), out=str(out), decoding=decoding(tiny_model_dir, kw), encoder=minilm_encoder, **kw
    )


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "reconstructions.jsonl").read_text().splitlines()]


def check_audit(out: Path, summary: dict, ids: list, tokenizer) -> None:
    """Every record back with its id, in store order, measured against its stored text."""
    recs = records(out)
    assert [r["id"] for r in recs] == ids
    for r in recs:
        text = SENTENCES[ids.index(r["id"])]
        assert r["reference"] == tokenizer.decode(tokenizer.encode([text])[0])
        assert 0 <= r["token_accuracy"] <= 1 and r["reference_tokens"] > 0
    assert summary["n"] == len(SENTENCES) and "token_accuracy" in summary
    assert summary["texts"].startswith("stored beside the vectors")
    md = (out / "report.md").read_text()
    assert "## Measured leakage" in md and "## Personal data" in md and "lower bound" in md
    # personal data was looked for in the stored texts
    by_id = {r["id"]: r for r in recs}
    email = by_id[ids[2]]["entities"]
    assert {"type": "email", "text": "john.smith@example.com"} == {k: email[0][k] for k in ("type", "text")}
    assert any(e["type"] == "phone" for e in by_id[ids[1]]["entities"])
    assert summary["entities"]["by_type"]["email"]["found"] == 1


# ---- Chroma ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chroma_dir(tmp_path_factory, vectors):
    import chromadb

    path = tmp_path_factory.mktemp("chroma") / "db"
    client = chromadb.PersistentClient(path=str(path))
    col = client.create_collection("notes", embedding_function=None)
    col.add(ids=IDS, embeddings=vectors.tolist(), documents=SENTENCES)
    return path


def test_chroma(tmp_path, chroma_dir, tiny_model_dir, minilm_encoder, tokenizer):
    s = run(tiny_model_dir, minilm_encoder, f"chroma://{chroma_dir}?collection=notes", tmp_path / "out")
    check_audit(tmp_path / "out", s, IDS, tokenizer)


def test_chroma_resume_after_interruption(tmp_path, chroma_dir, tiny_model_dir, minilm_encoder, monkeypatch):
    uri = f"chroma://{chroma_dir}?collection=notes"
    run(tiny_model_dir, minilm_encoder, uri, tmp_path / "whole")
    real, calls = audit.invert_chunk, []

    def dies_on_third(*a, **k):
        calls.append(len(a[1]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(audit, "invert_chunk", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_model_dir, minilm_encoder, uri, tmp_path / "cut")
    assert json.loads((tmp_path / "cut" / "progress.json").read_text())["done"] == 16
    monkeypatch.setattr(audit, "invert_chunk", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    run(tiny_model_dir, minilm_encoder, uri, tmp_path / "cut")
    assert calls == [8, 8, 8, 8, 8]  # the rerun inverted only the two chunks not yet recorded
    assert (tmp_path / "cut" / "reconstructions.jsonl").read_text() == (
        tmp_path / "whole" / "reconstructions.jsonl"
    ).read_text()


def test_no_texts_ignores_the_stored_documents(tmp_path, chroma_dir, tiny_model_dir, minilm_encoder):
    s = run(tiny_model_dir, minilm_encoder, f"chroma://{chroma_dir}?collection=notes", tmp_path / "o", no_texts=True)
    assert s["texts"] is None and "token_accuracy" not in s and "reference" not in records(tmp_path / "o")[0]


# ---- sampling -------------------------------------------------------------------------------------


def _sample_sources(tmp_path, vectors, chroma_dir):
    """The same 32 records as .npy (positions read by index), .jsonl (streamed), Chroma (by id)
    and LanceDB (by offset)."""
    import lancedb

    npy = tmp_path / "v.npy"
    np.save(npy, vectors)
    jsonl = tmp_path / "v.jsonl"
    jsonl.write_text("".join(json.dumps({"id": i, "embedding": v.tolist()}) + "\n" for i, v in zip(IDS, vectors)))
    rows = [{"id": i, "text": t, "vector": v.tolist()} for i, t, v in zip(IDS, SENTENCES, vectors, strict=True)]
    lancedb.connect(str(tmp_path / "lance")).create_table("notes", data=rows)
    return {
        "npy": (str(npy), list(range(len(IDS)))),
        "jsonl": (str(jsonl), IDS),
        "chroma": (f"chroma://{chroma_dir}?collection=notes", IDS),
        "lancedb": (f"lancedb://{tmp_path / 'lance'}?table=notes", IDS),
    }


def test_a_sample_is_uniform_reproducible_and_reads_the_records_at_its_positions(tmp_path, vectors, chroma_dir):
    for kind, (spec, ids) in _sample_sources(tmp_path, vectors, chroma_dir).items():
        source, pos, total = stores.sampled(stores.open_source(spec), 10, seed=1)
        assert total == 32 and len(pos) == 10 and list(pos) == sorted(set(pos.tolist())), kind
        got = list(stores.iter_chunks(source, 4))
        assert [len(c.ids) for c in got] == [4, 4, 2], kind
        assert [i for c in got for i in c.ids] == [ids[p] for p in pos], kind
        np.testing.assert_allclose(np.concatenate([c.vectors for c in got]), vectors[pos], rtol=1e-6, err_msg=kind)
        assert [i for c in stores.iter_chunks(source, 3, skip=7) for i in c.ids] == [ids[p] for p in pos[7:]], kind
        again = stores.sampled(stores.open_source(spec), 10, seed=1)[1]
        other = stores.sampled(stores.open_source(spec), 10, seed=2)[1]
        assert list(again) == list(pos) and list(other) != list(pos), kind
        assert source.fingerprint["sample"] == 10 and source.fingerprint["of"] == 32
    everything = stores.sampled(stores.open_source(str(tmp_path / "v.npy")), 100, seed=0)[1]
    assert list(everything) == list(range(32))  # a sample larger than the store is the store
    with pytest.raises(ValueError, match="positive"):
        stores.sampled(stores.open_source(str(tmp_path / "v.npy")), 0, seed=0)


def test_sample_positions_are_uniform():
    hits = np.zeros(50)
    for seed in range(2000):
        hits[stores.sample_positions(50, 5, seed)] += 1
    # each position is drawn with probability 5/50: 200 times in 2,000 draws (sd ~13)
    assert hits.min() > 150 and hits.max() < 250


def test_audit_of_a_sample_says_so_and_resumes(tmp_path, chroma_dir, tiny_model_dir, minilm_encoder):
    uri = f"chroma://{chroma_dir}?collection=notes"
    s = run(tiny_model_dir, minilm_encoder, uri, tmp_path / "s", sample_size=12, seed=1)
    pos = stores.sample_positions(32, 12, 1)
    assert [r["id"] for r in records(tmp_path / "s")] == [IDS[p] for p in pos]
    assert s["selection"] == {"how": "sample", "n": 12, "of": 32, "seed": 1} and s["n"] == 12
    md = (tmp_path / "s" / "report.md").read_text()
    assert "Estimated from a uniform random sample of 12 of 32 records (seed 1)" in md and "95% CI" in md
    before = (tmp_path / "s" / "reconstructions.jsonl").read_text()
    run(tiny_model_dir, minilm_encoder, uri, tmp_path / "s", sample_size=12, seed=1)  # done: the report again
    assert (tmp_path / "s" / "reconstructions.jsonl").read_text() == before
    with pytest.raises(ValueError, match="other arguments"):
        run(tiny_model_dir, minilm_encoder, uri, tmp_path / "s", sample_size=12, seed=2)
    first = run(tiny_model_dir, minilm_encoder, uri, tmp_path / "f", limit=5)
    assert first["selection"] == {"how": "first", "n": 5, "of": 32}
    assert "The first 5 of 32 records" in (tmp_path / "f" / "report.md").read_text()


# ---- LanceDB --------------------------------------------------------------------------------------


def test_lancedb(tmp_path, vectors, tiny_model_dir, minilm_encoder, tokenizer):
    import lancedb

    db = lancedb.connect(str(tmp_path / "lance"))
    rows = [{"id": i, "text": t, "vector": v.tolist()} for i, t, v in zip(IDS, SENTENCES, vectors, strict=True)]
    db.create_table("notes", data=rows)
    s = run(tiny_model_dir, minilm_encoder, f"lancedb://{tmp_path / 'lance'}?table=notes", tmp_path / "out")
    check_audit(tmp_path / "out", s, IDS, tokenizer)


# ---- Qdrant ---------------------------------------------------------------------------------------


def test_qdrant_local(tmp_path, vectors, tiny_model_dir, minilm_encoder, tokenizer):
    from qdrant_client import QdrantClient, models

    path = tmp_path / "qdrant"
    client = QdrantClient(path=str(path))
    client.create_collection("notes", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
    points = [
        models.PointStruct(id=i, vector=v.tolist(), payload={"text": t})
        for i, v, t in zip(INT_IDS, vectors, SENTENCES, strict=True)
    ]
    client.upsert("notes", points)
    client.close()  # local mode locks its folder: the audit opens it again
    s = run(tiny_model_dir, minilm_encoder, f"qdrant://{path}?collection=notes", tmp_path / "out")
    check_audit(tmp_path / "out", s, INT_IDS, tokenizer)


# ---- FAISS ----------------------------------------------------------------------------------------


def test_faiss_flat_index_with_meta_file(tmp_path, vectors, tiny_model_dir, minilm_encoder, tokenizer):
    import faiss

    index = faiss.IndexIDMap(faiss.IndexFlatIP(384))
    index.add_with_ids(vectors, np.asarray(INT_IDS, dtype=np.int64))
    faiss.write_index(index, str(tmp_path / "notes.faiss"))
    meta = tmp_path / "meta.jsonl"
    meta.write_text("".join(json.dumps({"text": t}) + "\n" for t in SENTENCES))
    s = run(tiny_model_dir, minilm_encoder, f"faiss://{tmp_path / 'notes.faiss'}?meta={meta}", tmp_path / "out")
    check_audit(tmp_path / "out", s, INT_IDS, tokenizer)
    np.testing.assert_allclose(stores.read_all(f"faiss://{tmp_path / 'notes.faiss'}", 384, "m")[1], vectors)


def test_faiss_lossy_index_is_refused(tmp_path, vectors, tiny_model_dir, minilm_encoder):
    import faiss

    index = faiss.IndexPQ(384, 8, 4)
    index.train(np.tile(vectors, (10, 1)))
    index.add(vectors)
    faiss.write_index(index, str(tmp_path / "pq.faiss"))
    with pytest.raises(ValueError, match="IndexPQ stores compressed codes, not the vectors"):
        run(tiny_model_dir, minilm_encoder, f"faiss://{tmp_path / 'pq.faiss'}", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_dimension_mismatch_is_refused_before_any_work(tmp_path, vectors, tiny_model_dir, minilm_encoder):
    import faiss

    index = faiss.IndexFlatL2(16)
    index.add(np.ascontiguousarray(vectors[:, :16]))
    faiss.write_index(index, str(tmp_path / "d16.faiss"))
    with pytest.raises(ValueError, match="vectors have dimension 16, model tiny-minilm expects 384"):
        run(tiny_model_dir, minilm_encoder, f"faiss://{tmp_path / 'd16.faiss'}", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- Milvus Lite ----------------------------------------------------------------------------------


def test_milvus_lite(tmp_path, vectors, tiny_model_dir, minilm_encoder, tokenizer):
    from pymilvus import DataType, MilvusClient

    path = tmp_path / "milvus.db"
    client = MilvusClient(str(path))
    schema = client.create_schema(auto_id=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=384)
    schema.add_field("text", DataType.VARCHAR, max_length=1000)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="COSINE")
    client.create_collection("notes", schema=schema, index_params=index)
    rows = [{"pk": i, "vector": v.tolist(), "text": t} for i, v, t in zip(IDS, vectors, SENTENCES, strict=True)]
    client.insert("notes", rows)
    client.close()
    s = run(tiny_model_dir, minilm_encoder, f"milvus-lite://{path}?collection=notes", tmp_path / "out")
    check_audit(tmp_path / "out", s, IDS, tokenizer)


# ---- PostgreSQL -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 (password authentication), stopped after the module.

    initdb refuses to run as root, so as root the server runs as the ``postgres`` user (Debian's
    package creates it) or ``nobody``, in a folder of its own outside pytest's (which only root can enter)."""
    if not (PG_BIN / "initdb").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL binaries missing in CI ({PG_BIN}): .ci/run installs Debian's postgresql")
        pytest.skip(f"PostgreSQL server binaries not installed ({PG_BIN}; apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="unembed-pg-"))
    (root / "pw").write_text(SECRET + "\n")
    prefix: list[str] = []
    if os.getuid() == 0:
        user = "postgres" if _has_user("postgres") else "nobody"
        shutil.chown(root, user)
        shutil.chown(root / "pw", user)
        prefix = ["runuser", "-u", user, "--"]
    data, port = root / "data", _free_port()
    init = [str(PG_BIN / "initdb"), "-D", str(data), "-U", "auditor", f"--pwfile={root / 'pw'}"]
    _run(prefix + init + ["--auth-host=scram-sha-256", "--auth-local=trust"])
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    ctl = prefix + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60"]
    _run(ctl + ["-o", opts, "start"])
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "auditor", "password": SECRET}
    finally:
        subprocess.run(ctl + ["-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip() or done.stdout.strip()}")


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module")
def pg_table(postgres, vectors):
    import psycopg

    pg = postgres
    with psycopg.connect(
        host=pg["host"], port=pg["port"], user=pg["user"], password=pg["password"], dbname="postgres"
    ) as conn:
        conn.execute("CREATE TABLE notes (id text PRIMARY KEY, body text NOT NULL, emb real[], emb8 float8[])")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO notes VALUES (%s, %s, %s, %s)",
                [(i, t, v.tolist(), v.tolist()) for i, t, v in zip(IDS, SENTENCES, vectors, strict=True)],
            )
    return pg


def test_postgresql_password_never_reaches_an_output(
    tmp_path, pg_table, tiny_model_dir, minilm_encoder, tokenizer, capfd, caplog
):
    pg = pg_table
    uri = f"postgresql://{pg['user']}:{pg['password']}@{pg['host']}:{pg['port']}/postgres?table=notes&column=emb&text=body"
    with caplog.at_level("DEBUG"):
        s = run(tiny_model_dir, minilm_encoder, uri, tmp_path / "out", progress=True)
    check_audit(tmp_path / "out", s, IDS, tokenizer)
    assert s["vectors"].startswith(f"postgresql://{pg['user']}:***@")
    for f in (tmp_path / "out").rglob("*"):
        assert f.is_dir() or SECRET.encode() not in f.read_bytes(), f.name
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err + caplog.text


def test_postgresql_password_from_the_environment_and_float8(
    tmp_path, pg_table, tiny_model_dir, minilm_encoder, tokenizer, monkeypatch
):
    pg = pg_table
    monkeypatch.setenv("PGPASSWORD", pg["password"])
    uri = f"postgresql://{pg['user']}@{pg['host']}:{pg['port']}/postgres?table=notes&column=emb8&text=body"
    s = run(tiny_model_dir, minilm_encoder, uri, tmp_path / "out")
    check_audit(tmp_path / "out", s, IDS, tokenizer)
    monkeypatch.setenv("PGPASSWORD", "wrong")
    with pytest.raises(ValueError, match="cannot connect") as info:
        run(tiny_model_dir, minilm_encoder, uri, tmp_path / "o2")
    assert "wrong" not in str(info.value) and "\n" not in str(info.value)


# ---- errors ---------------------------------------------------------------------------------------


def test_a_missing_client_library_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lancedb", None)  # what an install without the extra looks like
    (tmp_path / "db").mkdir()
    with pytest.raises(ValueError, match=r"lancedb:// needs the lancedb package: pip install 'unembed\[stores\]'"):
        stores.open_source(f"lancedb://{tmp_path / 'db'}?table=t")


def test_bad_uris_are_one_line_errors(tmp_path, chroma_dir):
    cases = [
        (f"chroma://{chroma_dir}", r"needs \?collection=NAME"),
        (f"chroma://{chroma_dir}?collection=notes&colection=x", "unknown parameter 'colection'"),
        (f"chroma://{chroma_dir}?collection=nope", "no collection 'nope'"),
        (f"chroma://{tmp_path / 'absent'}?collection=notes", "directory not found"),
        ("redis://localhost/0", "unknown source scheme redis://"),
        (f"faiss://{tmp_path / 'none.faiss'}", "file not found"),
    ]
    for uri, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            stores.open_source(uri)
        assert "\n" not in str(info.value)


def test_partly_missing_stored_texts_need_a_choice(tmp_path, vectors, tiny_model_dir, minilm_encoder):
    path = tmp_path / "v.jsonl"
    rows = [
        {"id": i, "embedding": v.tolist(), **({"text": t} if k % 2 else {})}
        for k, (i, v, t) in enumerate(zip(IDS, vectors, SENTENCES, strict=True))
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="16 of 32 records have no stored text.*--no-texts"):
        run(tiny_model_dir, minilm_encoder, path, tmp_path / "out")
    assert run(tiny_model_dir, minilm_encoder, path, tmp_path / "out", no_texts=True)["n"] == len(IDS)


def test_redact():
    assert stores.redact("postgresql://u:pw@h:5/db?table=t") == "postgresql://u:***@h:5/db?table=t"
    assert stores.redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert stores.redact("v.npy") == "v.npy"


def test_invert_reads_the_same_sources_with_the_audits_rules(tmp_path, vectors, tiny_model_dir, capsys):
    import faiss

    from unembed import cli

    index = faiss.IndexFlatIP(384)
    index.add(vectors[:3])
    faiss.write_index(index, str(tmp_path / "three.faiss"))
    code = cli.main(
        [
            "invert",
            "--model",
            str(tiny_model_dir),
            "--vectors",
            f"faiss://{tmp_path / 'three.faiss'}",
            "--steps",
            "2",
            "--json",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and [json.loads(x)["id"] for x in lines] == [0, 1, 2]
    np.save(tmp_path / "flat.npy", vectors[0])
    (tmp_path / "strings.jsonl").write_text(json.dumps({"embedding": [str(x) for x in vectors[0]]}) + "\n")
    dup = "".join(json.dumps({"id": "a", "embedding": v.tolist()}) + "\n" for v in vectors[:2])
    (tmp_path / "dup.jsonl").write_text(dup)
    for name, message in [
        ("flat.npy", r"need a numeric \[N, D\] array"),
        ("strings.jsonl", "list of numbers"),
        ("dup.jsonl", "duplicate record id 'a'"),
    ]:
        code = cli.main(["invert", "--model", str(tiny_model_dir), "--vectors", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert code == 2 and message.replace("\\", "") in err and err.count("\n") == 1, name


def test_a_killed_audit_of_a_real_store_resumes_to_the_uninterrupted_result(tmp_path, vectors, tiny_model_dir):
    """`unembed audit` on a Chroma store is stopped by Ctrl-C, then killed (SIGKILL), then rerun:
    the finished reconstructions equal an uninterrupted run's, and each stop lost at most the batch
    in flight (progress is committed after every batch)."""
    import signal
    import time

    import chromadb

    texts = [f"{s} Record {i}." for i in range(3) for s in SENTENCES]  # 96 records
    vecs = np.concatenate([vectors] * 3)
    col = chromadb.PersistentClient(path=str(tmp_path / "db")).create_collection("notes", embedding_function=None)
    col.add(ids=[f"r{i:03d}" for i in range(96)], embeddings=vecs.tolist(), documents=texts)
    uri = f"chroma://{tmp_path / 'db'}?collection=notes"
    argv = [sys.executable, "-m", "unembed.cli", "audit", uri, "--model", str(tiny_model_dir), "--steps", "2"]
    argv += ["--batch-size", "4", "--entities", "regex", "--no-progress", "--out"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = str(Path(__file__).parents[1] / "src")
    out = tmp_path / "cut"

    def done() -> int:
        try:
            return json.loads((out / "progress.json").read_text())["done"]
        except (OSError, ValueError):
            return 0

    for sig, at in ((signal.SIGINT, 8), (signal.SIGKILL, 40)):
        proc = subprocess.Popen([*argv, str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 300
        while done() < at:
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
            time.sleep(0.01)
        shown = done()
        proc.send_signal(sig)
        proc.wait(timeout=120)
        kept = done()
        lines = (out / "reconstructions.jsonl").read_bytes().count(b"\n")
        assert shown <= kept < 96 and kept % 4 == 0 and lines - kept < 4  # at most the batch in flight is lost
    finished = subprocess.run([*argv, str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    straight = subprocess.run([*argv, str(tmp_path / "straight")], env=env, capture_output=True, timeout=600)
    assert straight.returncode == 0
    got = (out / "reconstructions.jsonl").read_text().splitlines()
    assert got == (tmp_path / "straight" / "reconstructions.jsonl").read_text().splitlines() and len(got) == 96
