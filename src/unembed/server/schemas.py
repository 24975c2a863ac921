"""Pydantic models for every request, response and stream event of the HTTP API.

Limits that protect the server (text length, vector length) live here so that a bad payload is
refused with 422 before any model work starts. Checks that need a model (its dimension, its
sequence length) are made by the route, also before any model work.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..identify import BUILTIN_NAMES, MAX_VALUE_CHARS
from ..sampling import STRATEGIES

MAX_TEXT_CHARS = 2000
MAX_VECTOR_LEN = 16384  # longer than any served encoder's dimension; the route checks the exact one

Strategy = Literal[STRATEGIES]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
TokenState = Literal["masked", "new", "kept", "remasked"]


class _Request(BaseModel):
    """Requests refuse unknown fields so that a misspelt option is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def _check_text(text: str) -> str:
    if not text.strip():
        raise ValueError("text must contain something besides whitespace")
    return text


Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS), AfterValidator(_check_text)]


class EncodeRequest(_Request):
    text: Text = Field(description="the text to embed")
    model: str | None = Field(None, description="a served model's name (default: the first one)")


class EncodeResponse(BaseModel):
    model: str
    embedding: list[float] = Field(description="the encoder's unit-norm vector [D]")
    dim: int
    norm: float
    tokens: list[str] = Field(description="the decoder's tokens of the text (what an inversion can recover)")
    truncated: bool = Field(description="the text has more tokens than the decoder's sequence length holds")


class InvertRequest(_Request):
    """Invert a vector, given directly (``embedding``) or as the embedding of ``text``."""

    text: Text | None = None
    embedding: list[FiniteFloat] | None = Field(None, min_length=1, max_length=MAX_VECTOR_LEN)
    model: str | None = None
    strategy: Strategy | None = Field(None, description="decoding strategy (the model's default)")
    num_steps: int | None = Field(None, ge=1, le=4096, description="decoder forward passes, 1..seq_len")
    seed: int = Field(0, ge=0, le=2**63 - 1)

    @model_validator(mode="after")
    def _one_source(self) -> InvertRequest:
        if (self.text is None) == (self.embedding is None):
            raise ValueError("give exactly one of 'text' or 'embedding'")
        return self


MAX_CANDIDATES = 10_000
Candidate = Annotated[str, Field(min_length=1, max_length=MAX_VALUE_CHARS)]


class IdentifyRequest(_Request):
    """Rank a list of candidate values for a vector (``embedding``, or the embedding of ``text``):
    the known-value attack (``unembed.identify``)."""

    text: Text | None = None
    embedding: list[FiniteFloat] | None = Field(None, min_length=1, max_length=MAX_VECTOR_LEN)
    candidates: list[Candidate] | None = Field(
        None, min_length=1, max_length=MAX_CANDIDATES, description="candidate values, one per item"
    )
    builtin: Literal[BUILTIN_NAMES] | None = Field(None, description="a built-in public list instead")
    type: str = Field("value", min_length=1, max_length=40, description="what the candidates are, e.g. person")
    top_k: int = Field(5, ge=1, le=50)
    model: str | None = None

    @model_validator(mode="after")
    def _one_each(self) -> IdentifyRequest:
        if (self.text is None) == (self.embedding is None):
            raise ValueError("give exactly one of 'text' or 'embedding'")
        if (self.candidates is None) == (self.builtin is None):
            raise ValueError("give exactly one of 'candidates' or 'builtin'")
        return self


class RankedCandidate(BaseModel):
    value: str
    type: str
    score: float = Field(description="the candidate's score, standardised against the list (z)")
    probability: float = Field(description="probability that the vector holds this value")


class IdentifyResponse(BaseModel):
    model: str
    source: str = Field(description="where the candidates came from")
    list_size: int
    scorer: str = Field(description="whitened (fitted for the model's encoder) or cosine")
    candidates: list[RankedCandidate]


class StepEvent(BaseModel):
    """One decoder forward pass: every position's token, state and confidence."""

    step: int
    num_steps: int
    t: float
    ids: list[int]
    tokens: list[str]
    states: list[TokenState]
    confidence: list[float]
    text: str = Field(description="the revealed tokens decoded so far")
    elapsed_ms: float


class Timings(BaseModel):
    queue_ms: float = Field(description="waiting for the model worker")
    encode_ms: float = Field(description="embedding the input text (0 for a given vector)")
    denoise_ms: float
    score_ms: float = Field(description="re-embedding the reconstruction")
    total_ms: float


class FinalEvent(BaseModel):
    model: str
    strategy: str
    num_steps: int
    seed: int
    text: str
    input_text: str | None
    ids: list[int]
    tokens: list[str]
    confidence: list[float]
    cosine: float = Field(description="cosine of the reconstruction's re-embedding to the target vector")
    token_accuracy: float | None = Field(description="against the input text's tokens, when a text was given")
    batch_size: int = Field(description="requests decoded together in one batch")
    timings: Timings


class ErrorEvent(BaseModel):
    message: str


class ErrorResponse(BaseModel):
    error: str
    detail: list[dict] | None = None


class ModelInfo(BaseModel):
    name: str
    encoder: str
    dim: int
    vocab_size: int
    seq_len: int
    strategies: list[str]
    default_strategy: str
    default_num_steps: int
    eos_id: int = Field(description="the end-of-sentence token id (the page shows it as END)")
    pad_id: int = Field(description="the padding token id (positions after the end)")


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class WorkerStats(BaseModel):
    active: int = Field(description="admitted jobs not yet finished (queued or running)")
    capacity: int
    batches: int
    largest_batch: int
    finished: int
    cancelled: int
    steps: int


class Memory(BaseModel):
    rss_mb: float
    peak_rss_mb: float


class HealthResponse(BaseModel):
    status: Literal["ok"]
    models: list[str]
    worker: WorkerStats
    memory: Memory
