"""`unembed` command line: thin commands over the library.

Every argument is checked before any model is loaded or any work starts. One error path: an
expected failure (bad input, a file that is not there, an output that would be lost) prints one
line on stderr and exits 2; an unexpected one prints one line naming the file that holds its full
traceback (``-v`` prints the traceback too) and exits 1. Building the parser imports no torch.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .cli_args import EXIT_USAGE, build_parser, one_line
from .settings import Decoding

log = logging.getLogger("unembed.cli")

EXIT_CRASH = 1


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _decoding(args) -> Decoding:
    """The decoding settings given on the command line (None: the model's own), checked."""
    return Decoding(
        model=args.model,
        strategy=args.strategy,
        steps=args.steps,
        seed=args.seed,
        length=args.length,
        precision=args.precision,
        batch_size=getattr(args, "batch_size", 64),
        device=args.device,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    name = f"unembed {args.command}"
    try:
        return COMMANDS[args.command](args) or 0
    except (CliError, ValueError, OSError) as exc:  # OSError: missing/unreadable files, no network, ports
        print(f"{name}: error: {one_line(exc) or type(exc).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        print(f"{name}: error: needs the Python package {exc.name!r}: pip install it", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        print(f"{name}: {one_line(exc) or 'interrupted'}", file=sys.stderr)
        return 128 + getattr(exc, "signum", 2)
    except Exception as exc:
        path = _write_traceback(args.command)
        if verbose:
            traceback.print_exc()
        first = one_line(exc)[:300]
        print(f"{name}: unexpected error: {type(exc).__name__}: {first} (traceback in {path})", file=sys.stderr)
        return EXIT_CRASH


def _write_traceback(command: str) -> Path:
    fd, path = tempfile.mkstemp(prefix=f"unembed-{command}-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"unembed {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}")
    return Path(path)


# ---- checks done before any work ------------------------------------------------------------------


def _same_path(a: str | Path, b: str | Path | None) -> bool:
    return b is not None and Path(a).resolve() == Path(b).resolve()


def _creatable(path: Path, flag: str) -> None:
    """The nearest existing folder above ``path`` must be a writable folder."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CliError(f"{flag} {path}: cannot create it, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CliError(f"{flag} {path}: cannot create it, {parent} is not writable")


def out_file(path: str, flag: str = "--out", inputs: tuple = (), force: bool = False) -> Path:
    """An output file: not one of the inputs, not a folder, not an existing file (unless force)."""
    p = Path(path)
    out_files(p, [p], flag, inputs, force)
    return p


def out_files(out: Path, paths: list[Path], flag: str = "--out", inputs: tuple = (), force: bool = False) -> None:
    """Every file a command writes for ``flag`` (``out`` and the files it writes beside or inside it),
    checked before any work: none is an input or a folder, none exists unless ``force``."""
    for p in paths:
        for src in inputs:
            if src is not None and Path(src).exists() and _same_path(p, src):
                what = "is also the input" if p == out else f"would write {p}, which is the input {src}"
                raise CliError(f"{flag} {out} {what}: write the results to another file")
        if p.is_dir():
            raise CliError(
                f"{flag} {out} is a folder; give a file path" if p == out else f"{flag} {out}: {p} is a folder"
            )
        if p.exists() and not force:
            beside = "" if p == out else f" would overwrite {p}"
            raise CliError(f"{flag} {out}{beside or ' exists'}; use --force to overwrite it")
    _creatable(out, flag)


def out_dir(path: str, flag: str = "--out") -> Path:
    """An output (or resume) folder: a folder or nothing yet, under a writable folder."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CliError(f"{flag} {path} is a file; give a folder (it is created if missing)")
    _creatable(p, flag)
    return p


def in_file(path: str | None, flag: str) -> None:
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise CliError(f"{flag} {path} is a folder; give a file")
    if not p.is_file():
        raise CliError(f"{flag} {path}: file not found")


def in_source(spec: str, flag: str) -> None:
    """A vector file, or a store URI (scheme://...), which the store's reader checks itself."""
    if "://" not in spec:
        in_file(spec, flag)


def in_dir(path: str | None, flag: str, marker: str | None = None) -> None:
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CliError(f"{flag} {path} is a file; give a folder")
    if not p.is_dir():
        raise CliError(f"{flag} {path}: folder not found")
    if marker and not (p / marker).is_file():
        raise CliError(f"{flag} {path} holds no {marker}")


def _device(name: str) -> None:
    from .devices import check_device

    check_device(name)


def _texts_are_utf8(texts: list[str]) -> None:
    for i, text in enumerate(texts, 1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise CliError(f"--text number {i} is not valid UTF-8") from None


def _source_file(source: str, flag: str = "--source") -> None:
    """corpus.documents names unknown sources and missing files; a folder it would call 'not found'."""
    if Path(source).is_dir():
        raise CliError(f"{flag} {source} is a folder; give builtin, builtin:NAME, c4 or a file")


def _model_fits_data(model: str, data: str) -> None:
    """A model decodes L tokens; data prepared for another length cannot be scored against it."""
    from .catalog import resolve_model_dir

    cfg = json.loads((resolve_model_dir(model) / "config.json").read_text())
    manifest = Path(data) / "manifest.json"
    if not manifest.is_file():
        raise CliError(f"--data {data} is no prepared data folder (no manifest.json)")
    seq_len = json.loads(manifest.read_text()).get("seq_len")
    if seq_len != cfg["model"]["seq_len"]:
        raise CliError(f"model {model} decodes {cfg['model']['seq_len']} tokens but {data} was prepared with {seq_len}")


# ---- commands ----------------------------------------------------------------------------------


def cmd_corpus(args) -> int:
    from .corpus import write_corpus

    _source_file(args.source)
    out_file(args.out, inputs=(args.source,), force=args.force)
    counts = write_corpus(
        args.source, args.out, limit=args.limit, skip_missing=args.skip_missing, progress=not args.no_progress
    )
    print(json.dumps(counts, indent=1))
    return 0


def cmd_prepare(args) -> int:
    _source_file(args.source)
    out_dir(args.out)
    _device(args.device)
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

    cfg = load_config(args.config, overrides=args.overrides)
    out_dir(args.out)
    if cfg.train.data:
        in_dir(cfg.train.data, "train.data", marker="manifest.json")
    from .train import train

    result = train(cfg, args.out, stop_at=args.stop_at, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank returns here
        print(json.dumps(result))
    return 0


def cmd_invert(args) -> int:
    if args.text is not None:
        if args.out:
            raise CliError("--out writes the results of --vectors; with --text the results are printed")
        _texts_are_utf8(args.text)
    else:
        in_source(args.vectors, "--vectors")
        if args.out:
            out_file(args.out, inputs=(args.vectors,), force=True)  # an existing one is checked below
    _device(args.device)
    decoding = _decoding(args)
    if args.text is None:
        return _invert_file(decoding, args)
    inv, d = decoding.load()
    vectors = inv.encode(args.text)
    results = inv.invert(vectors, d.strategy, d.steps, d.seed, d.batch_size)
    scores = inv.score(args.text, results, vectors)
    for text, res, sc in zip(args.text, results, scores):
        if args.json:
            print(json.dumps({"input": text, "text": res.text, **sc}))
        else:
            print(res.text)
            print(f"  token accuracy {sc['token_accuracy']:.1%}  cosine {sc['cosine']:.3f}", file=sys.stderr)
    if not args.json:
        from .metrics import DEFINITIONS

        for key in ("token_accuracy", "cosine"):
            print(f"  ({key.replace('_', ' ')}: {DEFINITIONS[key]})", file=sys.stderr)
    return 0


def _invert_file(decoding: Decoding, args) -> int:
    """Stream the inversions of a vectors file to --out (resumable, batch by batch) or stdout."""
    from .bulk import invert_vectors

    def emit(rows: list[dict]) -> None:
        print("\n".join(json.dumps(r) if args.json else f"{r['id']}\t{r['text']}" for r in rows), flush=True)

    n = invert_vectors(
        decoding,
        args.vectors,
        args.out,
        emit,
        force=args.force,
        ray=args.ray,
        workers=args.workers,
        progress=not args.no_progress,
    )
    if args.out:
        print(f"wrote {n} reconstructions to {args.out}", file=sys.stderr)
    return 0


def cmd_evaluate(args) -> int:
    in_file(args.texts, "--texts")
    in_dir(args.data, "--data", marker="manifest.json")
    if args.out:
        from .evaluate import output_paths

        report = Path(args.out)
        out_files(report, output_paths(report, args.sweep), inputs=(args.texts,), force=args.force)
    _device(args.device)
    if args.data:
        _model_fits_data(args.model, args.data)
    from .evaluate import run_evaluate

    run_evaluate(
        texts=args.texts,
        data=args.data,
        split=args.split,
        limit=args.limit,
        out=args.out,
        sweep=args.sweep,
        rerank=args.rerank,
        decoding=_decoding(args),
    )
    return 0


def cmd_audit(args) -> int:
    in_source(args.vectors, "vectors")
    in_file(args.texts, "--texts")
    out = out_dir(args.out)
    if out.is_dir() and any(out.iterdir()) and not (out / "progress.json").is_file():
        raise CliError(f"--out {out} is not empty and holds no audit to resume: use another --out")
    if args.sample is not None and args.limit is not None:
        raise CliError("give --sample N (a random sample) or --limit N (the first N), not both")
    _device(args.device)
    from .audit import run_audit

    summary = run_audit(
        args.vectors,
        texts=args.texts,
        out=args.out,
        limit=args.limit,
        decoding=_decoding(args),
        no_texts=args.no_texts,
        entities=args.entities,
        progress=not args.no_progress,
        candidates=args.candidates,
        sample_size=args.sample,
        ray=args.ray,
        workers=args.workers,
    )
    print(f"audited {summary['n']} vectors: {Path(args.out) / 'report.md'} and report.html", file=sys.stderr)
    return 0


def cmd_identify(args) -> int:
    in_source(args.vectors, "--vectors")
    if args.out:
        out_file(args.out, inputs=(args.vectors,), force=True)  # an existing one is checked by the writer
    from .files import JsonlSink
    from .identify import CHUNK, identify_source, read_candidates
    from .stores import open_source

    lists = [read_candidates(spec) for spec in args.candidates]  # every list checked before any work
    source = open_source(args.vectors)
    run_args = {
        "vectors": source.label,  # no credentials
        "fingerprint": json.loads(json.dumps(source.fingerprint, default=str)),  # changes when the data does
        "candidates": [f"{c.source} sha256:{c.sha256}" for c in lists],
        "model": args.model,
        "top": args.top,
        "limit": args.limit,
        "batch_size": CHUNK,
    }
    sink = JsonlSink.partial(Path(args.out), run_args, args.force) if args.out else None
    done = sink.done if sink else 0
    rows = identify_source(
        args.vectors, lists, args.model, args.top, args.limit, progress=not args.no_progress, skip=done
    )
    n, chunk = done, []
    for row in rows:
        n += 1
        if not sink:
            print(json.dumps(row, ensure_ascii=False), flush=True)
            continue
        chunk.append(row)
        if len(chunk) == CHUNK:  # resumable at chunk boundaries, as identify_source's skip expects
            sink.write(chunk)
            chunk = []
    if sink:
        if chunk:
            sink.write(chunk)
        sink.finish()
        print(f"wrote the candidates of {n} records to {args.out}", file=sys.stderr)
    return 0


def cmd_defend(args) -> int:
    in_dir(args.data, "--data", marker="manifest.json")
    out = out_dir(args.out)
    from .defend import OUTPUT_FILES

    out_files(out, [out / name for name in OUTPUT_FILES], force=args.force)
    _device(args.device)
    _model_fits_data(args.model, args.data)
    if args.noise_model:
        _model_fits_data(args.noise_model, args.data)
    from .defend import run_defend

    run_defend(
        args.data,
        args.defenses,
        out=args.out,
        split=args.split,
        limit=args.limit,
        attack_k=args.attack_k,
        noise_model=args.noise_model,
        decoding=_decoding(args),
        progress=not args.no_progress,
    )
    print((Path(args.out) / "defend.md").read_text())
    return 0


def cmd_serve(args) -> int:
    _device(args.device)
    from .server.app import serve

    sample = {"precision": args.precision}
    serve(models=args.model or ["default"], host=args.host, port=args.port, device=args.device, sample=sample)
    return 0


def cmd_gpu_pack(args) -> int:
    in_file(args.corpus, "--corpus")
    out_dir(args.out)
    from .gpujob import pack

    info = pack(args.corpus, args.encoder, args.out, max_mb=args.max_mb, fidelity_n=args.fidelity_n)
    print(json.dumps(info, indent=1))
    return 0


def cmd_gpu_train(args) -> int:
    from .config import load_config

    in_dir(args.pack, "--pack", marker="pack.json")
    out_dir(args.out)
    if args.work:
        out_dir(args.work, "--work")
    load_config(args.config, overrides=args.overrides)  # a bad config fails here, not in every run
    from .gpujob import run_job

    result = run_job(
        args.pack,
        args.out,
        minutes=args.minutes,
        config=args.config,
        overrides=args.overrides,
        work=args.work,
        shard_mb=args.shard_mb,
        limit=args.limit,
        margin_s=args.margin_s,
        invert_n=args.invert_n,
    )
    print(json.dumps({k: v for k, v in result.items() if k != "log"}))
    return 0


def cmd_fit_length(args) -> int:
    from dataclasses import replace

    from .catalog import resolve_model_dir
    from .checkpoint import load_model, save_model
    from .length import fit_length_head
    from .prepare import PreparedData

    out_dir(args.out)
    # The stored fp32 weights and config as they are: not Inverter.load, whose model is the
    # inference copy (int8 on most CPUs, which cannot be trained or saved) and whose config
    # carries decoding overrides that would be saved into the new model.
    cfg, model = load_model(resolve_model_dir(args.model), "cpu")
    data = PreparedData(args.data)
    m = cfg.model
    data.check_compatible(cfg.encoder.name, m.vocab_size, m.seq_len, m.mask_id, m.pad_id, m.eos_id)
    model, report = fit_length_head(model, data, hidden=args.hidden, epochs=args.epochs)
    save_model(Path(args.out), replace(cfg, model=model.cfg), model.state_dict())
    print(json.dumps(report))
    return 0


def cmd_models(args) -> int:
    from .catalog import DEFAULT_MODEL, list_models, models_path

    seen: set[str] = set()
    for name, folder in list_models():
        note = " (shadowed by the one above)" if name in seen else (" (default)" if name == DEFAULT_MODEL else "")
        seen.add(name)
        print(f"{name}\t{folder}{note}")
    print("searched: " + os.pathsep.join(str(p) for p in models_path()), file=sys.stderr)
    return 0


def cmd_fetch_corpus(args) -> int:
    import subprocess

    script = Path(__file__).resolve().parent / "fetch_corpus.sh"
    return subprocess.run(["bash", str(script)], env={**os.environ, "PYTHON": sys.executable}).returncode


def cmd_split_texts(args) -> int:
    from .prepare import write_split_texts

    in_file(args.corpus, "--corpus")
    out_file(args.out, inputs=(args.corpus,), force=True)
    n = write_split_texts(args.corpus, args.split, args.out, encoder=args.encoder, seq_len=args.seq_len)
    print(f"wrote {n} {args.split} sentences to {args.out}")
    return 0


COMMANDS = {
    "corpus": cmd_corpus,
    "prepare": cmd_prepare,
    "train": cmd_train,
    "invert": cmd_invert,
    "evaluate": cmd_evaluate,
    "audit": cmd_audit,
    "identify": cmd_identify,
    "defend": cmd_defend,
    "serve": cmd_serve,
    "gpu-pack": cmd_gpu_pack,
    "gpu-train": cmd_gpu_train,
    "models": cmd_models,
    "fetch-corpus": cmd_fetch_corpus,
    "split-texts": cmd_split_texts,
    "fit-length": cmd_fit_length,
}

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
