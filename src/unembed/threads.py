"""How many CPU threads decoding should use right now: the cores that other programs leave free.

torch's OpenMP threads spin while they wait for each other. When another program keeps a core
busy, a thread that lost its core makes the others spin until the scheduler gives it back, and a
decoder pass that took 35 ms takes several times as long (docs/benchmarks.md, busy machine).
One thread fewer than the busy cores avoids that. ``free_cores`` counts the runnable tasks of the
whole machine (``/proc/loadavg``) minus this process's own running threads, takes the least of
three looks a millisecond apart (a program that is really busy is runnable in all of them, a
short-lived one is not; when the first look finds nobody, that is the answer, so a quiet machine
pays one read of /proc), and leaves at least one core. On systems without ``/proc`` it changes
nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

LOOKS = 3
PAUSE_S = 0.001


def _own_running() -> int:
    own = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        own += stat[stat.rindex(")") + 2] == "R"
    return own


def _runnable_elsewhere() -> int | None:
    """Runnable tasks on the machine that are not this process's threads (None without /proc).

    Our own threads are counted before and after reading the machine's count and the larger
    count is taken: OpenMP threads that stop spinning in between must not pass for another program."""
    try:
        before = _own_running()
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        own = max(before, _own_running())
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - own)


def free_cores(limit: int) -> int:
    """Cores of this process's affinity set that no other program is using now, between 1 and
    ``limit`` (``limit`` when it cannot be told)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = _runnable_elsewhere()
    for _ in range(LOOKS - 1):
        if not busy:  # None (no /proc) or 0
            break
        time.sleep(PAUSE_S)
        busy = min(busy, _runnable_elsewhere() or 0)
    return max(1, min(limit, cores - (busy or 0)))
