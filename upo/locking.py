"""An exclusive lock between processes on one machine, around work that must be done once (conversions, caches)."""

from __future__ import annotations

import contextlib
import fcntl
import sys
from pathlib import Path


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, waiting_message: str):
    """Hold `lock_file` exclusively (flock: released when the process ends, even on SIGKILL).

    Prints `waiting_message` to stderr when another process holds it. Where the lock file cannot be created (a
    read-only folder), goes on without the lock: the caller's atomic writes still keep its files whole.
    """
    try:
        handle = open(lock_file, "w")
    except OSError:
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(waiting_message, file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
