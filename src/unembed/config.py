"""One typed, frozen config tree.

YAML files hold overrides only; ``key.sub=value`` strings override on the command line.
Unknown keys and values of the wrong type raise ``ValueError`` naming the key.
Values that come from the tokenizer or encoder (vocab size, special ids, cond dim) are
filled in by :func:`resolve_derived` and recorded in every saved config, never typed by hand.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .settings import LENGTH_MODES, PRECISIONS, SCHEDULE_KINDS

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data; in a checkout a link to configs/


@dataclass(frozen=True)
class ModelConfig:
    n_layers: int = 4
    width: int = 256
    n_heads: int = 4
    mlp_dim: int = 1024
    dropout: float = 0.0
    seq_len: int = 32
    init: str = "random"  # "random" or "encoder": copy what fits from the encoder's weights
    length_head: int = 0  # hidden width of the length head (vector -> sentence length); 0 = none
    # Filled in from the tokenizer and encoder (0/-1 means "not resolved yet").
    vocab_size: int = 0
    cond_dim: int = 0
    mask_id: int = -1
    pad_id: int = -1
    eos_id: int = -1


@dataclass(frozen=True)
class EncoderConfig:
    name: str = "minilm"  # preset name, hub id or local folder
    pooling: str = ""  # "" = the preset's pooling; else mean | cls | last-token
    max_length: int = 128
    batch_size: int = 64


@dataclass(frozen=True)
class ScheduleConfig:
    kind: str = "linear"  # linear: alpha = 1 - t;  exp: alpha = exp(-lam * t)
    lam: float = 5.0
    eps: float = 1e-3
    antithetic: bool = True
    t_power: float = 1.0  # training times t = u ** t_power: < 1 trains more often at heavy masking


@dataclass(frozen=True)
class TrainConfig:
    data: str = ""  # a prepared data folder (unembed prepare)
    batch_size: int = 64
    grad_accum: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 200
    max_steps: int = 2000
    max_minutes: float = 0.0  # 0 = no wall-clock limit; else stop (and save) after this long
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    seed: int = 0
    log_every: int = 50
    eval_every: int = 500
    save_every: int = 500
    eval_batches: int = 8
    eval_decode_n: int = 64
    eval_decode_steps: int = 8
    cond_noise: float = 0.0  # std of Gaussian noise added to unit cond vectors (noise-aware training)
    compile: bool = False
    init_from: str = ""  # a model folder (or shipped name) to start from, with a fresh optimizer
    loss_norm: str = "elbo"  # elbo: w(t) * CE summed / (B * L) | masked-mean: plain mean CE of masked tokens
    length_loss: float = 0.1  # weight of the length head's cross-entropy (when the model has one)
    length_reveal: float = 0.0  # share of sequences trained with EOS and padding given (as length-first decoding)
    # The GPU fast path (see gpujob): every row of the data on the device, and a fixed-size head
    # gather (loss.masked_capacity) so that no step waits on the host. Same batches either way.
    resident: bool = False
    sync_free: bool = False
    eval_minutes: float = 0.0  # also validate (and keep the best model) every this many training minutes
    # also save when this many wall-clock minutes passed since the last save (0 = off): a crash loses at most that
    save_minutes: float = 10.0


@dataclass(frozen=True)
class SampleConfig:
    strategy: str = "confidence"
    num_steps: int = 8
    temperature: float = 0.0  # 0 = argmax
    remask_ratio: float = 0.05
    refine_ratio: float = 0.25
    length: str = "auto"  # auto: the length head when the model has one | head | free (no length first)
    precision: str = "auto"  # decoding weights: auto (int8 on a CPU) | fp32 | bf16 | int8 (precision.py)
    compact: bool = True  # with a committed length, passes compute each sentence up to its EOS only


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


# How people write numbers: 3, -2, 1_000, 0.5, .5, 1e-3, 5E-4, 2.5e+3, 010 (ten). PyYAML follows YAML
# 1.1, which reads "1e-3" and "5E-4" as strings and "010" as octal 8; _Loader reads them all as here.
_NUMBER = re.compile(r"[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d+)?")


def parse_number(text: str) -> int | float | None:
    """A number as written (see ``_NUMBER``) -> int (no dot, no exponent) or float; else None."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    plain = text.replace("_", "")
    return int(plain) if plain.lstrip("+-").isdigit() else float(plain)


class _Loader(yaml.SafeLoader):
    """Safe YAML whose plain scalars that look like numbers (``_NUMBER``) are decimal numbers."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# PyYAML tries a resolver with re.match, which accepts a prefix: anchor it so "1e-3x" stays a string.
_Loader.add_implicit_resolver("!number", re.compile(rf"(?:{_NUMBER.pattern})\Z"), list("+-.0123456789"))
_Loader.add_constructor("!number", lambda loader, node: parse_number(loader.construct_scalar(node)))


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: plain data only, never objects


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Check/convert one value against a field type; raise ValueError naming ``key``."""
    origin = typing.get_origin(typ)
    if origin is tuple:
        args = typing.get_args(typ)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"config key {key!r} needs {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"config key {key!r} needs true/false, got {value!r}")
    if typ is int:
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)  # 1e3 or 2.0e+4 for a count
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"config key {key!r} needs an integer, got {value!r}")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise ValueError(f"config key {key!r} needs a finite number, got {value!r}")
    if typ is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"config key {key!r} needs a string, got {value!r}")
    if isinstance(typ, types.UnionType):  # pragma: no cover - not used yet
        raise ValueError(f"unsupported union type for {key!r}")
    raise ValueError(f"unsupported config type for {key!r}")


def _apply(obj: Any, overrides: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in fields(obj)}
    changes = {}
    for key, value in overrides.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ValueError(f"unknown config key {full!r} (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"config key {full!r} is a section; give it a mapping")
            changes[key] = _apply(current, value, f"{full}.")
        else:
            changes[key] = _coerce(value, hints[key], full)
    return replace(obj, **changes)


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"config key {key!r} conflicts with another override")
        node[parts[-1]] = value
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-3", "model.init=encoder"]`` -> nested dict; values parsed as YAML."""
    dotted = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            dotted[key.strip()] = _yaml(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ValueError(f"override {item!r}: cannot parse the value{_where(exc)}") from None
    return _nest(dotted)


def preset_path(name: str) -> Path:
    """A preset name (``tiny``) or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if path.is_dir():
            raise ValueError(f"config {name} is a folder; give a YAML file or a preset name")
        if not path.is_file():
            raise ValueError(f"config file not found: {name}")
        return path
    candidate = CONFIG_DIR / f"{name}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ValueError(f"unknown config preset {name!r} (known: {', '.join(known)})")
    return candidate


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = _yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a YAML text file (not UTF-8)") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML{_where(exc)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping")
    return data


def _where(exc: yaml.YAMLError) -> str:
    """' at line L, column C: problem' in one line (PyYAML's own message spans several)."""
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{at}: {problem}"


def load_config(*sources: str | Path | dict | None, overrides: list[str] | None = None) -> Config:
    """Defaults, then each source (preset name, YAML path or dict) in order, then overrides.

    A YAML file may name other presets to start from with ``inherit: [name, ...]``.
    """
    cfg = Config()
    for src in sources:
        if src is None:
            continue
        cfg = _apply(cfg, _expand(src))
    if overrides:
        cfg = _apply(cfg, parse_overrides(overrides))
    validate(cfg)
    return cfg


def _expand(src: str | Path | dict) -> dict[str, Any]:
    if isinstance(src, dict):
        return src
    data = read_yaml(preset_path(str(src)))
    parents = data.pop("inherit", [])
    merged: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        merged = _merge(merged, _expand(parent))
    return _merge(merged, data)


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def validate(cfg: Config) -> None:
    m, s, t, sa = cfg.model, cfg.schedule, cfg.train, cfg.sample
    checks = [
        (m.width % m.n_heads == 0, "model.width must be a multiple of model.n_heads"),
        (m.n_layers >= 1 and m.width >= 8, "model.n_layers >= 1 and model.width >= 8"),
        (2 <= m.seq_len <= 512, "model.seq_len must be in [2, 512]"),
        (m.init in ("random", "encoder"), "model.init must be random or encoder"),
        (s.kind in SCHEDULE_KINDS, f"schedule.kind must be one of {', '.join(SCHEDULE_KINDS)}"),
        (s.lam > 0 and 0 < s.eps < 0.5, "schedule.lam > 0 and 0 < schedule.eps < 0.5"),
        (0 < s.t_power <= 4, "schedule.t_power must be in (0, 4]"),
        (m.length_head >= 0, "model.length_head must be >= 0"),
        (t.loss_norm in ("elbo", "masked-mean"), "train.loss_norm must be elbo or masked-mean"),
        (t.length_loss >= 0, "train.length_loss must be >= 0"),
        (0 <= t.length_reveal <= 1, "train.length_reveal must be in [0, 1]"),
        (sa.length in LENGTH_MODES, f"sample.length must be one of {', '.join(LENGTH_MODES)}"),
        (sa.precision in PRECISIONS, f"sample.precision must be one of {', '.join(PRECISIONS)}"),
        (t.batch_size >= 1 and t.grad_accum >= 1, "train.batch_size and grad_accum >= 1"),
        (t.lr > 0 and 0 <= t.ema_decay < 1, "train.lr > 0 and 0 <= train.ema_decay < 1"),
        (t.max_steps >= 1 and t.max_minutes >= 0, "train.max_steps must be >= 1 and train.max_minutes >= 0"),
        (t.log_every >= 1 and t.eval_every >= 0 and t.save_every >= 0, "train.log_every >= 1, eval/save_every >= 0"),
        (t.save_minutes >= 0, "train.save_minutes >= 0"),
        (t.precision in ("auto", "fp32", "bf16"), "train.precision must be auto, fp32 or bf16"),
        (sa.num_steps >= 1, "sample.num_steps must be >= 1"),
        (0 <= sa.remask_ratio < 1 and 0 <= sa.refine_ratio < 1, "sample ratios must be in [0,1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def with_sample(cfg: Config, overrides: dict[str, Any] | None) -> Config:
    """``cfg`` with some ``sample`` settings replaced (None values are ignored), validated."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not given:
        return cfg
    out = _apply(cfg, {"sample": given})
    validate(out)
    return out


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(data: dict[str, Any]) -> Config:
    cfg = _apply(Config(), data)
    validate(cfg)
    return cfg


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(json.dumps(to_dict(cfg), indent=2) + "\n")


def load_config_json(path: Path) -> Config:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from None
    return from_dict(data)


def resolve_derived(cfg: Config, vocab_size: int, cond_dim: int, mask_id: int, pad_id: int, eos_id: int) -> Config:
    """Record the values read from the tokenizer and encoder; a conflicting recorded value is an error."""
    given = dict(vocab_size=vocab_size, cond_dim=cond_dim, mask_id=mask_id, pad_id=pad_id, eos_id=eos_id)
    for key, value in given.items():
        current = getattr(cfg.model, key)
        if current not in (0, -1) and current != value:
            raise ValueError(f"model.{key} is {current} in the config but {value} in the data/encoder")
    return replace(cfg, model=replace(cfg.model, **given))
