"""`--num_threads auto`: measure what other processes keep busy now, from /proc/stat."""

import multiprocessing
import os
import sys

import pytest
import torch

from upo.threads import busy_fraction, choose_num_threads, other_busy_cores


def test_busy_fraction_counts_steal_and_not_iowait():
    #          user nice system idle iowait irq softirq steal guest
    before = [100, 0, 50, 1000, 10, 0, 0, 5, 0]
    after = [160, 0, 70, 1090, 30, 0, 0, 25, 0]
    # deltas: user 60, system 20, idle 90, iowait 20, steal 20; total 210; busy 60 + 20 + 20 = 100
    assert busy_fraction(before, after) == pytest.approx(100 / 210)


def test_busy_fraction_with_no_ticks_elapsed_is_zero():
    ticks = [1, 2, 3, 4, 5, 6, 7, 8]
    assert busy_fraction(ticks, ticks) == 0.0


def _spin(seconds: float) -> None:
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_auto_picks_one_thread_while_other_processes_fill_the_cores():
    cpus = os.cpu_count() or 1
    if cpus < 2:
        pytest.skip("one core: auto never changes the thread count")
    previous = torch.get_num_threads()
    context = multiprocessing.get_context("spawn")
    spinners = [context.Process(target=_spin, args=(20.0,)) for _ in range(cpus)]
    for p in spinners:
        p.start()
    try:
        import time

        time.sleep(1.0)  # let the spawned interpreters start spinning
        assert other_busy_cores() >= cpus / 2
        assert choose_num_threads("auto") == 1
        assert torch.get_num_threads() == 1
    finally:
        for p in spinners:
            p.terminate()
            p.join()
        torch.set_num_threads(previous)


def test_a_number_sets_it_and_none_leaves_torch_alone():
    previous = torch.get_num_threads()
    try:
        assert choose_num_threads("1") == 1 and torch.get_num_threads() == 1
        assert choose_num_threads("none") is None and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
