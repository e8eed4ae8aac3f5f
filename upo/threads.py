"""How many torch CPU threads to use: opt-in, for commands that share a small CPU with other processes.

`choose_num_threads("auto")` measures what other processes keep busy (from /proc/stat, over half a second) and
picks one thread when they keep at least half the cores busy; the evaluation, the data builder, the demo and the
frontier expose it as `--num_threads`. Training never calls it: a training process keeps torch's own default
unless the user sets `OMP_NUM_THREADS` or `torch.set_num_threads`.
"""

from __future__ import annotations

import torch


def busy_fraction(before: list[int], after: list[int]) -> float:
    """The share of CPU time spent busy between two readings of the aggregate `cpu` line of /proc/stat, in [0, 1].

    `before`, `after`: the line's tick counters (user nice system idle iowait irq softirq steal ...). Busy is every
    tick that is not idle or iowait, steal included (another virtual machine holding a core counts as busy).
    """
    delta = [a - b for a, b in zip(after, before)]
    total = sum(delta[:8])
    if total <= 0:
        return 0.0
    idle = delta[3] + delta[4]
    return max(0.0, min(1.0, (total - idle) / total))


def _cpu_ticks() -> list[int] | None:
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    return [int(x) for x in fields[1:]] + [0] * max(0, 8 - len(fields[1:]))


def other_busy_cores(seconds: float = 0.5) -> float | None:
    """How many cores other processes keep busy now, measured over `seconds` while this process sleeps.

    Read from /proc/stat (Linux); None where it cannot be read. Not the load average: that decays over a minute,
    so a `pip install` that just ended, or a process blocked on disk, still reads as a busy core.
    """
    import os
    import time

    first = _cpu_ticks()
    if first is None:
        return None
    time.sleep(seconds)
    second = _cpu_ticks()
    if second is None:
        return None
    return busy_fraction(first, second) * (os.cpu_count() or 1)


def choose_num_threads(setting: str | int | None = "auto") -> int | None:
    """The torch CPU threads to use, and sets them: a number, None (torch's default), or 'auto'.

    'auto' picks 1 when other processes keep at least half the cores busy (measured over half a second, see
    `other_busy_cores`): then several threads wait on each other at every small matrix product, and generation
    runs up to ten times slower than on one thread (measured on a shared 2-core CPU). Otherwise torch's default.
    Where the load cannot be measured (no /proc/stat), 'auto' keeps torch's default.
    """
    import os

    if setting in (None, "", "none"):
        return None
    if setting == "auto":
        cpus = os.cpu_count() or 1
        busy = other_busy_cores()
        threads = 1 if busy is not None and cpus > 1 and busy >= cpus / 2 else None
    else:
        threads = int(setting)
    if threads:
        torch.set_num_threads(threads)
    return threads
