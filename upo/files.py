"""Where upo keeps what it builds once, and how it writes files so that nothing is ever seen half-written.

* `default_cache_dir()`: the cache root, `$UPO_CACHE`, else `~/.cache/upo` (converted models, designer scores,
  reference log-probs).
* `atomic_write(path, write)`: writes through a temporary file in the same folder, flushed to disk, then renamed
  over `path` with `os.replace`, so a concurrent reader (or a run killed mid-write) sees the old file or the new
  one, never part of one. `atomic_write_text` and `atomic_write_json` are the common cases.
* `exclusive_lock(lock_file, message)`: a lock between processes (the `filelock` package: `flock` on POSIX, a
  lock on Windows), around work that must be done once. The operating system releases it when its process
  ends, however it ends (SIGKILL too), so a kill never leaves a lock that must be cleaned up by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from filelock import FileLock, Timeout

from upo.logs import get_logger

logger = get_logger(__name__)


def default_cache_dir() -> Path:
    """The upo cache root: `$UPO_CACHE` if set, else `~/.cache/upo`."""
    return Path(os.environ.get("UPO_CACHE") or Path.home() / ".cache" / "upo").expanduser()


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], mode: str = "w") -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it to `path` (see the module docstring).

    The folder is created if needed. On any failure the temporary file is removed and the error propagates;
    `path` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def atomic_write_json(path: str | os.PathLike, value, **dump_kwargs) -> None:
    """`value` as JSON (`indent=1` unless given), ending with a newline."""
    dump_kwargs.setdefault("indent", 1)
    atomic_write_text(path, json.dumps(value, **dump_kwargs) + "\n")


@contextlib.contextmanager
def exclusive_lock(lock_file: str | os.PathLike, waiting_message: str):
    """Hold `lock_file` exclusively for the `with` block; wait for it when another process holds it.

    Prints `waiting_message` to stderr when it has to wait. Where the lock file cannot be created (a read-only
    folder), goes on without the lock: the callers' atomic writes still keep their files whole.
    """
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info(waiting_message)
        lock.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def try_lock(lock_file: str | os.PathLike):
    """Take `lock_file` without waiting: yields True when this process now holds it, False when another does."""
    Path(lock_file).parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
