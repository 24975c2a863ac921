"""The rows training sees: ``BatchOrder``, a seeded order of the training rows that every process
of a distributed run cuts the same way and that resumes exactly; ``fetch``, a batch of ids and
vectors on the device; ``ResidentData``, the whole prepared set on the GPU (``train.resident``)."""

from __future__ import annotations

import numpy as np
import torch


class BatchOrder:
    """Deterministic stream of row indices: epoch e is a seeded permutation of ``rows``.

    The whole state is ``cursor`` (samples consumed, all ranks together), so resume is exact.
    Each call takes ``batch * world`` samples; rank r keeps its slice. ``next`` gives numpy
    indices, ``next_on`` the same indices as a tensor on a device (each epoch's permutation is
    copied there once, so a step reads nothing from the host).
    """

    def __init__(self, rows: np.ndarray, seed: int, rank: int = 0, world: int = 1):
        if len(rows) == 0:
            raise ValueError("no training rows in the data")
        self.rows, self.seed, self.rank, self.world = rows, seed, rank, world
        self.cursor = 0
        self._epoch, self._perm = -1, rows
        self._on: tuple[int, torch.Tensor] | None = None

    def _perm_of(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._perm = self.rows[np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))]
            self._epoch = epoch
        return self._perm

    def _perm_on(self, epoch: int, device: torch.device) -> torch.Tensor:
        if self._on is None or self._on[0] != epoch or self._on[1].device != device:
            perm = torch.from_numpy(self._perm_of(epoch))
            if device.type == "cuda":
                perm = perm.pin_memory()  # an asynchronous copy: the host does not wait for the GPU
            self._on = (epoch, perm.to(device, non_blocking=True))
        return self._on[1]

    def _spans(self, batch: int) -> list[tuple[int, int, int]]:
        """(epoch, start, end) pieces of the next batch * world samples; advances the cursor."""
        n = len(self.rows)
        spans, start, need = [], self.cursor, batch * self.world
        while need > 0:
            epoch, pos = divmod(start, n)
            take = min(need, n - pos)
            spans.append((epoch, pos, pos + take))
            start += take
            need -= take
        self.cursor = start
        return spans

    def next(self, batch: int) -> np.ndarray:
        both = np.concatenate([self._perm_of(e)[a:b] for e, a, b in self._spans(batch)])
        return both[self.rank * batch : (self.rank + 1) * batch]

    def next_on(self, batch: int, device: torch.device) -> torch.Tensor:
        both = torch.cat([self._perm_on(e, device)[a:b] for e, a, b in self._spans(batch)])
        return both[self.rank * batch : (self.rank + 1) * batch]


def fetch(data, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a PreparedData -> (x0 [B, L] long, cond [B, D] float32) on device."""
    order = np.sort(rows)  # memmap reads in file order; the batch order does not matter to the loss
    x0 = torch.from_numpy(np.asarray(data.ids[order], dtype=np.int64))
    cond = torch.from_numpy(np.asarray(data.vectors[order], dtype=np.float32))
    return x0.to(device, non_blocking=True), cond.to(device, non_blocking=True)


class ResidentData:
    """All ids and vectors of a PreparedData held on the device; ``fetch`` gives what the module
    function gives (rows in sorted order, same dtypes), read from device memory."""

    def __init__(self, data, device: torch.device):
        self.ids = torch.from_numpy(np.array(data.ids)).to(device)  # int32 [N, L] (a copy: memmaps are read-only)
        self.vectors = torch.from_numpy(np.array(data.vectors)).to(device)  # [N, D]
        self.device = device

    def fetch(self, rows: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.sort(torch.as_tensor(rows, device=self.device)).values
        return self.ids[idx].long(), self.vectors[idx].float()
