"""Model work off the event loop: one worker thread, a bounded job count, batching, cancellation.

The event loop only validates requests and moves events; every encoder call and decoder forward
pass runs on the worker thread. Jobs that are waiting when the worker picks up a job, or that
arrive within ``batch_window_s`` of it, and share its key (model, strategy, num_steps) are decoded
as one batch, every strategy included: each row draws its random numbers from a generator of its
own request's seed, and passes attend only within a row's own sentence, so a batched request gets
the same text as the same request alone, and as ``unembed invert --text`` with its seed, when the
model runs in fp32. In bf16 and int8 (the CPU default, ``precision.py``) the kernels round a row
differently beside other rows (int8 scales activations per batch), so under concurrent load a
near-tie can go the other way; quality is the same (docs/speed.md).

Admission is bounded: ``submit`` raises :class:`Saturated` when ``max_jobs`` jobs are queued or
running, and the route answers 503 with Retry-After. A job whose client went away is cancelled;
a batch stops after the current forward pass once all of its jobs are cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..inverter import Inverter
from ..metrics import cosine, token_accuracy_per_row
from .schemas import EncodeResponse, ErrorEvent, FinalEvent, IdentifyResponse, StepEvent, Timings, WorkerStats

log = logging.getLogger(__name__)

_STOP = object()


class Saturated(Exception):
    """Raised by :meth:`Worker.submit` when the job limit is reached."""


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


@dataclass(eq=False)
class Job:
    """Common part of a unit of model work: which model, when it arrived, whether it is wanted."""

    model: str
    submitted: float = field(default_factory=time.perf_counter, init=False)
    cancelled: threading.Event = field(default_factory=threading.Event, init=False)

    def cancel(self) -> None:
        self.cancelled.set()

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled.is_set()

    @property
    def key(self) -> tuple:
        raise NotImplementedError

    @property
    def batchable(self) -> bool:
        return True

    def fail(self, message: str) -> None:
        raise NotImplementedError


@dataclass(eq=False)
class EncodeJob(Job):
    """Embed one text; the result arrives on ``future`` (an EncodeResponse or an exception)."""

    text: str = ""
    future: Future = field(default_factory=Future, init=False)

    @property
    def key(self) -> tuple:
        return ("encode", self.model)

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled.is_set() or self.future.cancelled()

    def resolve(self, result: EncodeResponse) -> None:
        try:
            self.future.set_result(result)
        except InvalidStateError:  # the waiting request was cancelled meanwhile
            self.cancel()

    def fail(self, message: str) -> None:
        try:
            self.future.set_exception(RuntimeError(message))
        except InvalidStateError:
            self.cancel()


@dataclass(eq=False)
class IdentifyJob(EncodeJob):
    """Rank ``candidates`` for one vector (or the embedding of ``text``); an IdentifyResponse arrives
    on ``future``. Never batched: each request has its own list."""

    vector: np.ndarray | None = None
    candidates: Any = None  # identify.CandidateList or FullNames
    top_k: int = 5
    cache: bool = False  # pasted lists are embedded in memory; built-in ones cached on disk

    @property
    def key(self) -> tuple:
        return ("identify", self.model, id(self))

    @property
    def batchable(self) -> bool:
        return False


@dataclass(eq=False)
class InvertJob(Job):
    """Invert one vector (or the embedding of ``text``); events go to ``events`` on ``loop``.

    The events are StepEvent (one per forward pass), then a FinalEvent, or an ErrorEvent.
    """

    strategy: str = "confidence"
    num_steps: int = 8
    seed: int = 0
    text: str | None = None
    vector: np.ndarray | None = None  # [D]; filled from text by the worker when None
    loop: asyncio.AbstractEventLoop | None = None
    events: asyncio.Queue | None = None
    timings: dict[str, float] = field(default_factory=dict, init=False)

    @property
    def key(self) -> tuple:
        return ("invert", self.model, self.strategy, self.num_steps)

    def emit(self, event: StepEvent | FinalEvent | ErrorEvent) -> None:
        """Hand an event to the request's event loop (thread-safe)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancel()

    def fail(self, message: str) -> None:
        self.emit(ErrorEvent(message=message))


class Worker:
    """One thread that runs all model work for a set of inverters."""

    def __init__(
        self, inverters: dict[str, Inverter], max_jobs: int = 64, max_batch: int = 32, batch_window_s: float = 0.005
    ):
        if max_jobs < 1 or max_batch < 1 or batch_window_s < 0:
            raise ValueError("max_jobs and max_batch must be >= 1 and batch_window_s >= 0")
        self.inverters = inverters
        self.max_jobs, self.max_batch, self.batch_window_s = max_jobs, max_batch, batch_window_s
        self._queue: queue.Queue = queue.Queue()
        self._backlog: deque = deque()
        self._lock = threading.Lock()
        self._active = 0
        self._stats = {"batches": 0, "largest_batch": 0, "finished": 0, "cancelled": 0, "steps": 0}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._scorers: dict[str, Any] = {}  # model name -> identify.Scorer, loaded on first use

    # ---- called from the event loop --------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="unembed-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Fail the jobs still waiting, finish the running batch, end the thread."""
        if self._thread is not None:
            self._stopping.set()
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, job: Job) -> None:
        """Admit a job or raise Saturated; never blocks."""
        with self._lock:
            if self._active >= self.max_jobs:
                raise Saturated(f"the server is busy ({self._active} jobs in progress); retry shortly")
            self._active += 1
        self._queue.put(job)

    def stats(self) -> WorkerStats:
        with self._lock:
            return WorkerStats(active=self._active, capacity=self.max_jobs, **self._stats)

    # ---- the worker thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            live = [j for j in batch if not j.is_cancelled]
            try:
                if self._stopping.is_set():
                    for job in live:
                        job.fail("the server is shutting down")
                elif live:
                    self._count(batches=1, largest_batch=len(live))
                    self._execute(live)
            except Exception as exc:  # the boundary: report to every client of the batch, keep serving
                log.exception("model work failed for %d job(s)", len(live))
                for job in live:
                    job.fail(f"{type(exc).__name__}: {exc}")
            finally:
                self._finish(batch)

    def _next_batch(self) -> list[Job] | None:
        """The next job plus every compatible job waiting or arriving within the batch window."""
        first = self._backlog.popleft() if self._backlog else self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        if not first.batchable:
            return batch
        for job in [j for j in self._backlog if j is not _STOP and j.batchable and j.key == first.key]:
            if len(batch) >= self.max_batch:
                break
            self._backlog.remove(job)
            batch.append(job)
        deadline = time.monotonic() + self.batch_window_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP and job.batchable and job.key == first.key:
                batch.append(job)
            else:
                self._backlog.append(job)
        return batch

    def _count(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                self._stats[k] = max(self._stats[k], v) if k == "largest_batch" else self._stats[k] + v

    def _finish(self, batch: list[Job]) -> None:
        cancelled = sum(j.is_cancelled for j in batch)
        with self._lock:
            self._active -= len(batch)
            self._stats["finished"] += len(batch) - cancelled
            self._stats["cancelled"] += cancelled

    def _execute(self, batch: list[Job]) -> None:
        inv = self.inverters[batch[0].model]
        if isinstance(batch[0], IdentifyJob):
            self._identify(inv, batch[0])
        elif isinstance(batch[0], EncodeJob):
            self._encode(inv, batch)
        else:
            self._invert(inv, batch)

    def _identify(self, inv: Inverter, job: IdentifyJob) -> None:
        from ..identify import Scorer, identify

        if inv.name not in self._scorers:
            self._scorers[inv.name] = Scorer.load(inv.folder) if inv.folder else Scorer.cosine()
        scorer = self._scorers[inv.name]
        vector = inv.encode(job.text) if job.vector is None else job.vector[None]
        rows = identify(vector, [job.candidates], inv.encoder, scorer, job.top_k, cache=job.cache)
        job.resolve(
            IdentifyResponse(
                model=inv.name,
                source=job.candidates.source,
                list_size=len(job.candidates),
                scorer=scorer.kind,
                candidates=rows[0],
            )
        )

    def _encode(self, inv: Inverter, batch: list[EncodeJob]) -> None:
        vectors = inv.encode([j.text for j in batch])
        ref = inv.tokenizer.encode([j.text for j in batch])
        cut = inv.tokenizer.is_cut([j.text for j in batch])
        for job, vec, row, was_cut in zip(batch, vectors, ref, cut, strict=True):
            content = inv.tokenizer.content(row)
            job.resolve(
                EncodeResponse(
                    model=inv.name,
                    embedding=[float(x) for x in vec],
                    dim=int(vec.shape[0]),
                    norm=float(np.linalg.norm(vec)),
                    tokens=inv.tokenizer.token_strings(content),
                    truncated=was_cut,
                )
            )

    def _invert(self, inv: Inverter, batch: list[InvertJob]) -> None:
        start = time.perf_counter()
        for job in batch:
            job.timings["queue_ms"] = _ms(start - job.submitted)
        need = [j for j in batch if j.vector is None]
        if need:
            for job, vec in zip(need, inv.encode([j.text for j in need]), strict=True):
                job.vector = vec
        encoded = time.perf_counter()
        for job in batch:
            job.timings["encode_ms"] = _ms(encoded - start) if job in need else 0.0
        last = self._denoise(inv, batch, encoded)
        if last is None:
            log.info("all %d job(s) of a batch were cancelled; stopped early", len(batch))
            return
        denoised = time.perf_counter()
        self._final(inv, batch, last, encoded, denoised)

    def _denoise(self, inv: Inverter, batch: list[InvertJob], t0: float):
        """Run the shared generator; send each live job its row of every step. None if all left."""
        first = batch[0]
        vectors = np.stack([np.asarray(j.vector, dtype=np.float64) for j in batch])
        states = inv.stream(vectors, first.strategy, first.num_steps, [j.seed for j in batch])
        last = None
        try:
            for state in states:
                live = [i for i, j in enumerate(batch) if not j.is_cancelled]
                if not live:
                    return None
                self._count(steps=1)
                rows = _rows(state)
                elapsed = _ms(time.perf_counter() - t0)
                for i in live:
                    batch[i].emit(_step_event(inv, state, rows, i, elapsed))
                last = state
        finally:
            states.close()
        return last

    def _final(self, inv: Inverter, batch: list[InvertJob], state, encoded: float, denoised: float) -> None:
        ids = state.ids.cpu().numpy()
        conf = state.confidence.float().cpu().numpy()
        texts = [inv.tokenizer.decode(r) for r in ids]
        targets = np.stack([j.vector for j in batch])
        cos = cosine(inv.encode([t if t.strip() else "." for t in texts]), targets)
        acc: dict[int, float] = {}
        given = [i for i, j in enumerate(batch) if j.text is not None]
        if given:
            ref = inv.tokenizer.encode([batch[i].text for i in given])
            for i, a in zip(given, token_accuracy_per_row(ids[given], ref, inv.cfg.model.eos_id), strict=True):
                acc[i] = float(a)
        scored = time.perf_counter()
        for i, job in enumerate(batch):
            if job.is_cancelled:
                continue
            timings = Timings(
                queue_ms=job.timings["queue_ms"],
                encode_ms=job.timings["encode_ms"],
                denoise_ms=_ms(denoised - encoded),
                score_ms=_ms(scored - denoised),
                total_ms=_ms(scored - job.submitted),
            )
            job.emit(
                FinalEvent(
                    model=inv.name,
                    strategy=job.strategy,
                    num_steps=job.num_steps,
                    seed=job.seed,
                    text=texts[i],
                    input_text=job.text,
                    ids=ids[i].tolist(),
                    tokens=inv.tokenizer.token_strings(ids[i]),
                    confidence=conf[i].round(4).tolist(),
                    cosine=float(cos[i]),
                    token_accuracy=acc.get(i),
                    batch_size=len(batch),
                    timings=timings,
                )
            )


def _rows(state) -> dict[str, Any]:
    """A step state's tensors as numpy arrays (one device transfer per step, not per row)."""
    masked = state.masked.cpu().numpy()
    revealed = state.revealed.cpu().numpy()
    remasked = state.remasked.cpu().numpy() & masked
    kinds = np.where(revealed, "new", np.where(remasked, "remasked", np.where(masked, "masked", "kept")))
    return {"ids": state.ids.cpu().numpy(), "conf": state.confidence.float().cpu().numpy().round(4), "kinds": kinds}


def _step_event(inv: Inverter, state, rows: dict[str, Any], i: int, elapsed_ms: float) -> StepEvent:
    ids = rows["ids"][i]
    return StepEvent(
        step=state.step,
        num_steps=state.num_steps,
        t=round(float(state.t), 6),
        ids=ids.tolist(),
        tokens=inv.tokenizer.token_strings(ids),
        states=rows["kinds"][i].tolist(),
        confidence=rows["conf"][i].tolist(),
        text=inv.tokenizer.decode(ids),
        elapsed_ms=elapsed_ms,
    )
