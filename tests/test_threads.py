"""Decoding uses the cores other programs leave free, and its results do not depend on how many."""

from __future__ import annotations

import subprocess
import sys
import time

import torch

from unembed import threads
from unembed.inverter import Inverter


def test_a_busy_program_takes_a_core_away_and_gives_it_back():
    cores = len(threads.os.sched_getaffinity(0))
    assert threads.free_cores(cores) == cores or threads._runnable_elsewhere() > 0  # quiet: every core
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert threads.free_cores(cores) <= max(1, cores - 1)
    finally:
        busy.kill()
        busy.wait()
    assert 1 <= threads.free_cores(1) <= 1  # never above the limit, never below one


def test_results_are_the_same_on_one_thread_and_on_two(tiny_model_dir, fake_encoder):
    before = torch.get_num_threads()
    inv = Inverter.load(str(tiny_model_dir), sample={"precision": "int8"})
    inv.adapt_threads = False
    rng = torch.Generator().manual_seed(0)
    v = torch.randn(9, 384, generator=rng).numpy()
    try:
        got = []
        for n in (1, 2):
            torch.set_num_threads(n)
            got.append([(x.ids, x.confidence) for x in inv.invert(v, batch_size=9)])
    finally:
        torch.set_num_threads(before)
    assert got[0] == got[1]
