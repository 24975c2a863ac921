"""Inversion on a Ray cluster: a pool of actors that each load the model once, fed chunk by chunk.

``ChunkPool(model, workers, address, device, sample)`` starts (or joins) Ray and creates
``workers`` actors; ``pool.map(job, chunks)`` sends each chunk to a free actor and yields the
results **in chunk order**, holding at most ``IN_FLIGHT`` chunks per worker in flight, so the
caller writes them through the same resumable writer as a single-process run and memory stays at
a few chunks per worker whatever the store's size. A job is a plain function of the worker's
``Inverter`` and one chunk's payload (``bulk.invert_job`` for ``unembed invert --vectors``,
``audit.audit_job`` for ``unembed audit``); decoding is independent of batch composition, so the
output equals the single-process run's, record for record.

A worker that dies (its process killed, its node lost) is restarted by Ray, which loads the model
again and reruns the chunks it held (``max_restarts``, ``max_task_retries``). A chunk's result is
written once, when its turn comes, so nothing is lost or written twice; if a worker keeps dying,
the run stops with one line and the same command resumes after the last chunk written.

``address``: ``None`` or ``"local"`` starts a Ray instance on this machine (stopped at the end);
anything else (``"auto"``, ``"ray://HOST:10001"``, ``"HOST:6379"``) joins an existing cluster,
whose nodes must have unembed installed and resolve the model name (the shipped ``default`` is in
the package; a folder must be on a path every node sees). Ray moves chunks between processes with
its own serialisation (pickle): use it on a cluster you trust, as Ray's documentation says.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

EXTRA = "pip install 'unembed[ray]'"
IN_FLIGHT = 2  # chunks queued per worker: one decoding, one waiting
RESTARTS = 3  # times a dead worker is brought back before the run stops


def _ray():
    try:
        import ray
    except ImportError:
        raise ValueError(f"--ray needs Ray: {EXTRA}") from None
    return ray


class _Worker:
    """One actor: the model, loaded once, and the jobs it runs on chunks."""

    def __init__(self, model: str, device: str, sample: dict | None, threads: int):
        import torch

        from .inverter import Inverter

        torch.set_num_threads(threads)
        self.inv = Inverter.load(model, device=device, sample=sample)
        self.inv.adapt_threads = False  # the cores are Ray's to share out: one share per worker

    def run(self, job: Callable[[Any, Any], Any], payload: Any) -> Any:
        return job(self.inv, payload)


class ChunkPool:
    """``workers`` Ray actors holding the model; ``map`` runs a job over chunks in order."""

    def __init__(
        self,
        model: str,
        workers: int = 2,
        address: str | None = None,
        device: str = "cpu",
        sample: dict | None = None,
    ):
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        ray = _ray()
        self.ray, self.local = ray, address in (None, "local")
        self.started = not ray.is_initialized()  # a Ray the caller started is left running
        if self.started:
            try:
                if self.local:
                    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
                else:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = "a local Ray instance" if self.local else f"Ray at {address}"
                raise ValueError(f"cannot start {where}: {str(exc).splitlines()[0][:200]}") from None
        gpu = device.startswith("cuda")
        cpus = int(ray.cluster_resources().get("CPU", 1))
        threads = 1 if gpu else max(1, cpus // workers)
        options = {"max_restarts": RESTARTS, "max_task_retries": RESTARTS, "num_cpus": 0 if gpu else threads}
        if gpu:
            options["num_gpus"] = 1
        if os.path.exists(model):  # a folder: the same absolute path on every node (workers start elsewhere)
            model = os.path.abspath(model)
        actor = ray.remote(_Worker).options(**options)
        self.actors = [actor.remote(model, device, sample, threads) for _ in range(workers)]
        self.workers, self.threads, self.device = workers, threads, device

    def describe(self) -> dict[str, Any]:
        """What the report records: the engine, the workers and where they run."""
        return {
            "engine": f"ray {self.ray.__version__}",
            "address": "local" if self.local else "cluster",
            "workers": self.workers,
            "device": self.device,
            "threads_per_worker": self.threads,
        }

    def map(self, job: Callable[[Any, Any], Any], payloads: Iterable[Any]) -> Iterator[Any]:
        """``job(inverter, payload)`` for each payload on the actors; results in payload order."""
        ray = self.ray
        pending: deque = deque()
        it = iter(payloads)
        turn = 0

        def submit() -> bool:
            nonlocal turn
            try:
                payload = next(it)
            except StopIteration:
                return False
            pending.append(self.actors[turn % self.workers].run.remote(job, payload))
            turn += 1
            return True

        while len(pending) < IN_FLIGHT * self.workers and submit():
            pass
        while pending:
            try:
                result = ray.get(pending.popleft())
            except ray.exceptions.RayActorError as exc:
                raise ValueError(
                    f"a Ray worker died {RESTARTS + 1} times on the same chunk ({str(exc).splitlines()[0][:160]}); "
                    "what was written is kept: rerun the same command to resume"
                ) from None
            submit()
            yield result

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        if self.started and self.local:
            self.ray.shutdown()

    def __enter__(self) -> ChunkPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def local_worker_pids() -> list[int]:
    """Process ids of the unembed Ray workers running on this machine (their command line names the
    actor class): what a monitor samples for memory, or a test kills."""
    from pathlib import Path

    pids = []
    for d in Path("/proc").iterdir() if os.path.isdir("/proc") else ():
        if d.name.isdigit():
            try:
                if b"ray::_Worker" in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:  # the process ended meanwhile, or is not ours to read
                continue
    return pids
