"""`unembed` command line: thin commands over the library. Bad input exits 2 with one line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _add_inversion_args(p: argparse.ArgumentParser) -> None:
    from .sampling import STRATEGIES

    p.add_argument("--model", default="default", help="'default', a name under models/, or a model folder")
    p.add_argument("--strategy", choices=STRATEGIES, default=None, help="decoding strategy (model's default)")
    p.add_argument("--steps", type=int, default=None, help="decoder forward passes, 1..L (model's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="unembed", description="Recover text from text-embedding vectors.")
    ap.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("corpus", help="extract, filter and de-duplicate sentences into a JSONL file")
    p.add_argument("--source", required=True, help="builtin | c4 | FILE.txt | FILE.jsonl | FILE.parquet")
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--skip-missing", action="store_true", help="skip builtin sources that are not installed")

    p = sub.add_parser("prepare", help="sentences -> token ids + vectors on disk (resumable)")
    p.add_argument("--source", required=True, help="builtin | c4 | FILE.txt | FILE.jsonl | FILE.parquet")
    p.add_argument("--encoder", default="minilm", help="encoder preset, folder or hub id")
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=4096, help="sentences embedded between resume points")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="vector storage type")
    p.add_argument("--skip-missing", action="store_true", help="skip builtin sources that are not installed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("train", help="train or resume a decoder")
    p.add_argument("--config", default="small", help="preset name or YAML file (overrides only)")
    p.add_argument("--out", required=True, help="run folder (resumes when it holds a run)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.data=data/x")
    p.add_argument("--stop-at", type=int, default=None, help="stop (and save) after this train_step")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("invert", help="invert texts (via their vectors) or a file of vectors")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="text to embed and invert (repeatable)")
    src.add_argument("--vectors", help="FILE.npy|.jsonl|.parquet or a store URI (as for audit)")
    p.add_argument("--out", help="with --vectors: write JSONL results here")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    _add_inversion_args(p)

    p = sub.add_parser("evaluate", help="end-to-end metrics of a model on texts or a prepared split")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--texts", help="FILE.txt, one text a line")
    src.add_argument("--data", help="a prepared data folder")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", default=None, help="report.json path (per-sentence JSONL is written beside it)")
    p.add_argument("--sweep", action="store_true", help="strategies x steps (1,2,4,8,16,32) table and plot")
    p.add_argument("--rerank", type=int, default=0, help="draw K candidates, keep the one the encoder likes best")
    p.add_argument("--batch-size", type=int, default=64)
    _add_inversion_args(p)

    p = sub.add_parser("audit", help="invert a dump of stored vectors: per-record risk and a report (resumable)")
    p.add_argument(
        "vectors",
        metavar="SOURCE",
        help="FILE.npy|.jsonl|.parquet, or a store: chroma://DIR?collection=C, lancedb://DIR?table=T, "
        "qdrant://DIR?collection=C, qdrant+http://HOST:PORT?collection=C, faiss://INDEX[?meta=FILE.jsonl], "
        "postgresql://USER@HOST:PORT/DB?table=T&column=C[&id=ID&text=TEXT], milvus-lite://FILE.db?collection=C",
    )
    p.add_argument("--texts", default=None, help="true texts: FILE.jsonl (id, text) or FILE.txt (in vector order)")
    p.add_argument("--no-texts", action="store_true", help="ignore the texts stored beside the vectors")
    p.add_argument(
        "--entities", choices=["spacy", "regex", "off"], default="spacy", help="how personal data is found in texts"
    )
    p.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
    p.add_argument("--limit", type=int, default=None, help="audit only the first N vectors")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-progress", action="store_true")
    _add_inversion_args(p)

    p = sub.add_parser("defend", help="leakage (naive and adaptive attackers) vs retrieval utility of defenses")
    p.add_argument("--data", required=True, help="a prepared data folder")
    p.add_argument(
        "--defense",
        dest="defenses",
        action="append",
        required=True,
        metavar="SPEC",
        help="noise:SIGMA | quantize:int8 | quantize:binary | truncate:DIMS | rotate (repeatable)",
    )
    p.add_argument("--split", default="test", choices=["train", "validation", "test", "all"])
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", required=True, help="folder for defend.json, defend.md and privacy_utility.png")
    p.add_argument(
        "--attack-k",
        type=int,
        action="append",
        default=None,
        help="leaked (clean, defended) pairs for the adaptive attacker (repeatable; default 16 64 256 1024)",
    )
    p.add_argument("--noise-model", default=None, help="a model trained with train.cond_noise, to attack noise with")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-progress", action="store_true")
    _add_inversion_args(p)

    p = sub.add_parser("serve", help="web demo and HTTP API")
    p.add_argument("--model", action="append", default=None, help="model to serve (repeatable; default: default)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--device", default="cpu")

    p = sub.add_parser("gpu-pack", help="pack sentences + encoder (float16) into one folder for the GPU job")
    p.add_argument("--corpus", required=True, help="sentence JSONL made by `unembed corpus`")
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--out", required=True)
    p.add_argument("--max-mb", type=float, default=60.0)

    p = sub.add_parser("gpu-train", help="the GPU job: prepare + train from a pack for a number of minutes")
    p.add_argument("--pack", required=True)
    p.add_argument("--out", required=True, help="EMA weights (shards) and log are written here")
    p.add_argument("--work", default=None, help="scratch folder for the prepared data and run (default: temp)")
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--config", default="small")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--shard-mb", type=float, default=15.0)
    p.add_argument("--recipe", action="append", default=None, help="recipes to compare (default: all)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N sentences")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return COMMANDS[args.command](args) or 0
    except (CliError, ValueError, FileNotFoundError) as exc:
        print(f"unembed {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"unembed {args.command}: interrupted", file=sys.stderr)
        return 130


# ---- commands ----------------------------------------------------------------------------------


def cmd_corpus(args) -> int:
    from .corpus import write_corpus

    counts = write_corpus(args.source, args.out, limit=args.limit, skip_missing=args.skip_missing)
    print(json.dumps(counts, indent=1))
    return 0


def cmd_prepare(args) -> int:
    from .prepare import run_prepare

    manifest = run_prepare(
        args.source,
        args.encoder,
        args.out,
        limit=args.limit,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        device=args.device,
        dtype=args.dtype,
        progress=not args.no_progress,
        skip_missing=args.skip_missing,
    )
    print(f"prepared {manifest['count']} sentences in {args.out}")
    return 0


def cmd_train(args) -> int:
    from .config import load_config
    from .train import train

    cfg = load_config(args.config, overrides=args.overrides)
    result = train(cfg, args.out, stop_at=args.stop_at, progress=not args.no_progress)
    print(json.dumps(result))
    return 0


def cmd_invert(args) -> int:
    from .inverter import Inverter

    inv = Inverter.load(args.model, device=args.device)
    if args.text is not None:
        vectors = inv.encode(args.text)
        results = inv.invert(vectors, args.strategy, args.steps, args.seed)
        scores = inv.score(args.text, results, vectors)
        for text, res, sc in zip(args.text, results, scores):
            if args.json:
                print(json.dumps({"input": text, "text": res.text, **sc}))
            else:
                print(res.text)
                print(f"  token accuracy {sc['token_accuracy']:.1%}  cosine {sc['cosine']:.3f}", file=sys.stderr)
        return 0
    from .stores import read_all

    ids, vectors = read_all(args.vectors, inv.dim, inv.name)
    results = inv.invert(vectors, args.strategy, args.steps, args.seed)
    lines = [json.dumps({"id": i, "text": r.text, "confidence": r.confidence}) for i, r in zip(ids, results)]
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
        print(f"wrote {len(lines)} reconstructions to {args.out}", file=sys.stderr)
    else:
        for i, r, line in zip(ids, results, lines):
            print(line if args.json else f"{i}\t{r.text}")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import run_evaluate

    run_evaluate(
        model=args.model,
        texts=args.texts,
        data=args.data,
        split=args.split,
        limit=args.limit,
        strategy=args.strategy,
        num_steps=args.steps,
        out=args.out,
        sweep=args.sweep,
        rerank=args.rerank,
        seed=args.seed,
        device=args.device,
        batch_size=args.batch_size,
    )
    return 0


def cmd_audit(args) -> int:
    from .audit import run_audit

    summary = run_audit(
        args.vectors,
        texts=args.texts,
        model=args.model,
        out=args.out,
        strategy=args.strategy,
        num_steps=args.steps,
        batch_size=args.batch_size,
        device=args.device,
        limit=args.limit,
        no_texts=args.no_texts,
        entities=args.entities,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(f"audited {summary['n']} vectors: {Path(args.out) / 'report.md'} and report.html", file=sys.stderr)
    return 0


def cmd_defend(args) -> int:
    from .defend import run_defend

    run_defend(
        args.data,
        args.defenses,
        model=args.model,
        out=args.out,
        split=args.split,
        limit=args.limit,
        attack_k=args.attack_k,
        noise_model=args.noise_model,
        device=args.device,
        strategy=args.strategy,
        num_steps=args.steps,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    print((Path(args.out) / "defend.md").read_text())
    return 0


def cmd_serve(args) -> int:
    from .server.app import serve

    serve(models=args.model or ["default"], host=args.host, port=args.port, device=args.device)
    return 0


def cmd_gpu_pack(args) -> int:
    from .gpujob import pack

    info = pack(args.corpus, args.encoder, args.out, max_mb=args.max_mb)
    print(json.dumps(info, indent=1))
    return 0


def cmd_gpu_train(args) -> int:
    from .gpujob import run_job

    result = run_job(
        args.pack,
        args.out,
        minutes=args.minutes,
        config=args.config,
        overrides=args.overrides,
        work=args.work,
        shard_mb=args.shard_mb,
        recipes=args.recipe,
        limit=args.limit,
    )
    print(json.dumps(result))
    return 0


COMMANDS = {
    "corpus": cmd_corpus,
    "prepare": cmd_prepare,
    "train": cmd_train,
    "invert": cmd_invert,
    "evaluate": cmd_evaluate,
    "audit": cmd_audit,
    "defend": cmd_defend,
    "serve": cmd_serve,
    "gpu-pack": cmd_gpu_pack,
    "gpu-train": cmd_gpu_train,
}

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
