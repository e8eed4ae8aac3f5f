"""What the `upo` commands say when they fail: one line for a known kind of failure, the traceback for a bug.

`upo.cli.main` runs every command inside one boundary, which asks `explain(error)`. How the two are told apart:
by the exception's type, never by its message.

* **Known kinds** get one line naming the input and the fix (one line per problem when several were found at once,
  as `upo.preflight` finds them), and exit status 1 (130 for Ctrl-C):
  - `UPOError` (and its subclasses: `DataError`, `ConfigError`, `RewardFunctionError`, `ModelLoadError`, ...),
    which upo raises on purpose where the input is known: a bad row, option, model folder, chat template or
    reward function is caught at the place that reads it and re-raised with the file, row or option named;
  - `OSError`: the file system or the operating system refused (no space left, read-only, permission denied,
    a missing file), with the path it names;
  - `MemoryError` and torch's `OutOfMemoryError`: the batch does not fit;
  - `KeyboardInterrupt` (Ctrl-C): what was running is named when known (`upo.errors.Interrupted`); SIGTERM and
    SIGHUP arrive as `upo.errors.Terminated` (upo.cli), with status 128 + the signal's number.
* **Everything else** (`TypeError`, `KeyError`, `AttributeError`, an `IndexError` deep in a library, ...) is
  a bug, in upo or in a library it calls, or an input that no check covers yet: its traceback is shown in
  full, followed by one line asking for a report. Such a bug is fixed by adding a check where the input is
  read (raising a `UPOError`), never by widening this list.
"""

from __future__ import annotations

import errno
import os
import signal
from typing import NamedTuple

from upo.errors import Terminated, UPOError

INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report Ctrl-C

BUG_NOTE = ("This is an unexpected error, not one of the failures upo explains (bad input, options, files, "
            "memory): please report it with the traceback above and the output of `upo env`.")

_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space (or choose another output_dir); complete checkpoints are kept "
                  "and resume_from_checkpoint=True continues from the last one",
    errno.EDQUOT: "the disk quota is exceeded: free some space; complete checkpoints are kept",
    errno.EROFS: "the file system is read-only: choose a folder you can write to",
    errno.EACCES: "permission denied: choose a path you can read or write",
    errno.EPERM: "operation not permitted: choose a path you can read or write",
    errno.ENOENT: "no such file or folder: check the path",
    errno.EISDIR: "a folder where a file was expected: check the path",
    errno.ENOTDIR: "a file where a folder was expected: check the path",
    errno.EFBIG: "the file is larger than this system allows (ulimit -f): raise the limit or write elsewhere",
}


class Explained(NamedTuple):
    message: str
    status: int


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _torch_out_of_memory(error: BaseException) -> bool:
    import sys

    torch = sys.modules.get("torch")  # only if the command loaded it
    return torch is not None and isinstance(error, getattr(torch, "OutOfMemoryError", ()))


def explain(error: BaseException) -> Explained | None:
    """The one-line message and exit status of a known failure (see the module docstring); None for a bug."""
    if isinstance(error, Terminated):
        detail = _one_line(error) if str(error) else ""
        try:
            name = signal.Signals(error.signal_number).name
        except ValueError:
            name = f"signal {error.signal_number}"
        return Explained(f"stopped by {name}{' ' + detail if detail else ''}.", 128 + error.signal_number)
    if isinstance(error, KeyboardInterrupt):
        detail = _one_line(error) if str(error) else ""
        return Explained(f"interrupted (Ctrl-C){' ' + detail if detail else ''}.", INTERRUPTED_STATUS)
    if isinstance(error, UPOError):
        lines = getattr(error, "lines", None)  # several problems found at once (upo.preflight): one line each
        if lines and len(lines) > 1:
            return Explained(f"error: {len(lines)} problems, each with its fix:\n" + "\n".join(
                f"  - {_one_line(line)}" for line in lines), 1)
        return Explained(f"error: {_one_line(lines[0] if lines else error)}", 1)
    if isinstance(error, OSError):
        if error.errno is None:  # raised with a message only (transformers' "Can't load ...", for one)
            return Explained(f"error: {_one_line(error)}", 1)
        where = " ".join(f"{name}" for name in (error.filename, error.filename2) if name)
        hint = _OS_HINTS.get(error.errno, "")
        strerror = error.strerror or os.strerror(error.errno)
        return Explained(f"error: {strerror}{': ' + where if where else ''}{' (' + hint + ')' if hint else ''}.", 1)
    if isinstance(error, MemoryError) or _torch_out_of_memory(error):
        return Explained("error: out of memory. Lower per_device_train_batch_size (raise gradient_accumulation_steps "
                         "to keep the batch), lower max_length, set logps_chunk_size, or use LoRA (--use_peft true) "
                         "with precompute_ref_log_probs.", 1)
    return None
