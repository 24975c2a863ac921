"""Keep large freed blocks in the process instead of handing them back to the kernel (glibc).

A decoder pass on the CPU allocates and frees tensors of several MB to tens of MB every time: the
MLP's 1,536-wide activations, a chunk of vocabulary logits (128 rows x 30,522), attention's
queries, keys and values. glibc serves every request at or above its mmap threshold (128 KiB,
moving up to at most 32 MiB as large blocks are freed) with fresh pages from the kernel and
returns them on free, so the next pass pays a page fault and the kernel's zeroing for every
4 KiB it touches again; blocks above 32 MiB (a batch of 256 sentences' MLP activations is 50 MiB)
always. Measured on the shipped model (``Inverter.invert`` of 1,024 validation vectors in its
batches of 256, confidence, 8 passes, int8, 2 threads; ``docs/speed.md``): by default 3.2-3.6
million minor page faults, 9-12 s of system time and 63-70 s per run; with
:func:`keep_freed_memory`, none after the first run and 53 s, for 2.78 instead of 2.37 GB of
resident memory.

:func:`keep_freed_memory` raises the mmap threshold to ``MMAP_THRESHOLD`` and the trim threshold to
``TRIM_THRESHOLD``, so those blocks come from the heap and stay there for the next pass. The
price: freed memory stays in the process's resident size instead of going back to the system, up
to ``TRIM_THRESHOLD`` at the top of each glibc heap (the main one and each thread arena, such as
the server's decoding worker's) plus the holes between blocks. It changes the C library's
allocator for the whole process (an application that loads an unembed model gets it too), so it is
called where unembed loads a model for decoding on the CPU (``Inverter.load``, which then hands
back what loading freed: :func:`release_freed_memory`), once; set
``UNEMBED_MALLOC=0`` to leave the allocator as it is. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import threading

from .settings import Runtime

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 256 << 20  # blocks below this come from the heap
TRIM_THRESHOLD = 512 << 20  # free memory at the heap's top is kept up to this much
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_lock = threading.Lock()
_state: bool | None = None  # None: not tried yet; then whether it is in effect
_libc: ctypes.CDLL | None = None


def keep_freed_memory() -> bool:
    """Set glibc's thresholds once per process (see the module docstring); True if in effect.

    False when ``UNEMBED_MALLOC=0``, or when the C library is not glibc (no ``mallopt``) or
    refuses the values (logged as a warning); it never raises.
    """
    global _state
    with _lock:
        if _state is None:
            _state = _apply()
        return _state


def release_freed_memory() -> None:
    """Hand the heap's free memory back to the system now (glibc ``malloc_trim``), e.g. what
    loading a model freed, which the raised trim threshold would otherwise keep. No-op where
    :func:`keep_freed_memory` is not in effect."""
    if _state and _libc is not None:
        _libc.malloc_trim(0)


def _apply() -> bool:
    global _libc
    if not Runtime.from_env().malloc:
        log.debug("UNEMBED_MALLOC=0: the allocator's thresholds are left as they are")
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        log.debug("no glibc mallopt here: the allocator's thresholds are left as they are")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    malloc_trim.argtypes, malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    # Either refusal is a warning: the passes then keep paying the page faults (but run).
    if mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1 or mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        log.warning("glibc refused the allocator thresholds: large blocks keep coming fresh from the kernel")
        return False
    _libc = libc
    log.debug("glibc mmap threshold %d MiB, trim threshold %d MiB", MMAP_THRESHOLD >> 20, TRIM_THRESHOLD >> 20)
    return True
