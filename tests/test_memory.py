"""keep_freed_memory: large blocks freed by one pass are reused by the next without page faults."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")

# Allocate and touch a 40 MiB block 20 times (above the 32 MiB that glibc's own dynamic threshold
# can reach, as a batch of 256 sentences' MLP activations is), as passes do, then count the
# process's minor page faults over ten more. (With the thresholds raised, the heap settles after a
# few blocks: aligned requests do not always fit the hole the previous block left.)
SCRIPT = """
import resource, torch
from unembed.memory import keep_freed_memory
on = keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(20):
    torch.empty(40 << 18).fill_(1.0)
f0 = faults()
for i in range(10):
    torch.empty(40 << 18).fill_(1.0)
kept = faults() - f0
import os
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
blocks = [torch.empty(40 << 18).fill_(1.0) for _ in range(4)]
del blocks
before = rss()
from unembed.memory import release_freed_memory
release_freed_memory()
print(on, kept, (before - rss()) >> 20)
"""


def _run(setting: str) -> tuple[bool, int, int]:
    env = {**os.environ, "UNEMBED_MALLOC": setting}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    on, faults, released_mib = out.stdout.split()
    return on == "True", int(faults), int(released_mib)


def test_freed_blocks_are_reused_without_page_faults_and_released_on_request():
    on, faults, released = _run("1")
    off, faults_off, _ = _run("0")
    assert on and not off
    assert faults < 500  # 10 blocks of 40 MiB touched, but the pages were already there
    if not _huge_pages_always():  # with 2 MiB pages a fresh block faults only 20 times
        assert faults_off > 10 * faults + 100  # each block came fresh from the kernel
    assert released >= 100  # four freed 40 MiB blocks were still resident until release_freed_memory


def _huge_pages_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


def test_loading_a_model_on_the_cpu_keeps_freed_blocks_then_releases_what_loading_freed(tiny_model_dir, monkeypatch):
    from unembed import inverter

    calls = []
    monkeypatch.setattr(inverter, "keep_freed_memory", lambda: calls.append("keep"))
    monkeypatch.setattr(inverter, "release_freed_memory", lambda: calls.append("release"))
    inverter.Inverter.load(str(tiny_model_dir))
    assert calls == ["keep", "release"]
