"""Where an evaluation's time goes: wall seconds per phase (model load, generation, KL, implicit accuracy, scoring),
as `upo eval` prints them and the frontier logs them per run and over the grid.

A phase measured inside another (the KL inside generation) counts for itself alone: the outer phase is paused while
it runs, so the phases of one evaluation add up to its wall time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator

LOAD, GENERATION, KL, IMPLICIT_ACCURACY, SCORING = "load", "generation", "KL", "implicit accuracy", "scoring"
EVAL_PHASES = (LOAD, GENERATION, KL, IMPLICIT_ACCURACY, SCORING)


class Phases:
    """Wall seconds per phase (`seconds`), accumulated over every `measure(name)` block."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._open: list[list] = []  # [name, since] of each phase running, innermost last

    @contextlib.contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        if self._open:  # the enclosing phase pauses
            outer = self._open[-1]
            self.seconds[outer[0]] = self.seconds.get(outer[0], 0.0) + start - outer[1]
        self._open.append([name, start])
        try:
            yield
        finally:
            end = time.perf_counter()
            _, since = self._open.pop()
            self.seconds[name] = self.seconds.get(name, 0.0) + end - since
            if self._open:
                self._open[-1][1] = end

    def rounded(self) -> dict[str, float]:
        """Each phase of `EVAL_PHASES` (0 when it did not run), then any other, in tenths of a second."""
        names = [*EVAL_PHASES, *(n for n in self.seconds if n not in EVAL_PHASES)]
        return {name: round(self.seconds.get(name, 0.0), 1) for name in names}


def format_phases(seconds: dict[str, float], order: Iterable[str] = EVAL_PHASES) -> str:
    """`load 0.7 s, generation 12.1 s, KL 2.4 s, implicit accuracy 5.2 s, scoring 0.3 s`: every phase of `order`
    that `seconds` has, then the others."""
    order = list(order)
    names = [n for n in order if n in seconds] + [n for n in seconds if n not in order]
    return ", ".join(f"{name} {seconds[name]:.1f} s" for name in names)


def add_phases(total: dict[str, float], seconds: dict[str, float] | None) -> dict[str, float]:
    """`total` with `seconds` added phase by phase (a sum over runs)."""
    for name, value in (seconds or {}).items():
        if isinstance(value, (int, float)):
            total[name] = total.get(name, 0.0) + float(value)
    return total
