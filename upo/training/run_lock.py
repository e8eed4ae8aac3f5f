"""One run at a time in an output folder: a lock held for the life of a run, and a note saying who holds it.

Two runs started into the same `output_dir` would both write checkpoints into it, and the first would report
a model that is really the second's. `hold_output_dir` takes `{output_dir}/.upo-run.lock` (the `filelock`
package: `flock` on POSIX) when the trainer is built, before any data or reference work, and keeps it until
the trainer is garbage collected or the process ends. The operating system drops the lock when its process
ends, however it ends (SIGKILL and out-of-memory kills too), so a killed run never leaves a lock to remove by
hand. Beside it, `{output_dir}/.upo-run.json` names the holder: process id, host, start time and command.

* A second run into a folder in use is refused with `OutputDirInUseError`, naming the folder and the other
  run's process, before it loads anything.
* A note left by a run that did not release its lock (it was killed) is reported when the next run takes the
  folder: the complete checkpoints that run left are kept (`upo.training.checkpointing`).
* An `output_dir` that is a file, or a folder that cannot be written (read-only, no permission), is refused
  here too, before the data is prepared rather than at the first save.

The lock is between processes: several trainers in one process (a notebook) share it, and the "already holds
a trained model" check of `UPOTrainer.train` still keeps a second fresh run out of a finished folder. Under
several processes (torchrun, accelerate) only process 0 takes it. On a file system without `flock` (some
network mounts) `filelock` falls back to a lock file whose presence is the lock.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import weakref
from pathlib import Path

from filelock import FileLock, Timeout

from upo.errors import ConfigError
from upo.files import atomic_write_json
from upo.logs import get_logger

logger = get_logger(__name__)

LOCK_FILE = ".upo-run.lock"
OWNER_FILE = ".upo-run.json"

_held: dict[str, list] = {}  # real path of the folder -> [FileLock, holders in this process]


class OutputDirInUseError(ConfigError):
    """Another process is running into this output_dir."""


def describe_owner(owner: dict | None) -> str:
    """'pid 123 on host, started 2026-11-29 10:00:00 (upo train --config run.yaml)', or what is known of it."""
    if not owner:
        return "a process that left no note of itself"
    command = f" ({owner['command']})" if owner.get("command") else ""
    return f"pid {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}{command}"


def read_owner(folder: str | os.PathLike) -> dict | None:
    try:
        owner = json.loads((Path(folder) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def check_writable_folder(folder: str | os.PathLike, option: str = "output_dir") -> Path:
    """Create `folder` if needed; ConfigError when it is a file or cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder} is a file, not a folder: choose another {option}, or move the file away.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"Cannot create {option} {folder}: {error.strerror}. Choose a folder you can write "
                          "to.") from None
    return folder


class RunLock:
    """The lock of one output folder (see the module docstring); re-entrant within a process."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.key = os.path.realpath(self.folder)
        self.previous_owner: dict | None = None  # the note of a run that ended without releasing (killed)
        self.held = False

    def acquire(self) -> RunLock:
        check_writable_folder(self.folder)
        if self.key in _held:  # another trainer of this process holds it
            _held[self.key][1] += 1
            self.held = True
            return self
        lock = FileLock(str(self.folder / LOCK_FILE), thread_local=False)  # released from a finalizer's thread too
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise OutputDirInUseError(
                f"output_dir {self.folder} is in use by another run: {describe_owner(read_owner(self.folder))}. "
                "Wait for it to finish, or choose another output_dir."
            ) from None
        except OSError as error:
            raise ConfigError(f"Cannot write into output_dir {self.folder}: {error.strerror or error} (a read-only "
                              "folder or file system?). Choose a folder you can write to.") from None
        self.previous_owner = read_owner(self.folder)
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": datetime.datetime.now().isoformat(sep=" ", timespec="seconds"),
                 "command": " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])[:300]}
        try:
            atomic_write_json(self.folder / OWNER_FILE, owner)
        except OSError as error:
            lock.release()
            raise ConfigError(f"Cannot write into output_dir {self.folder}: {error.strerror or error} (a read-only "
                              "folder or a full disk?). Choose a folder you can write to.") from None
        _held[self.key] = [lock, 1]
        self.held = True
        return self

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        entry = _held.get(self.key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[self.key]
        owner = read_owner(self.folder)
        if owner is not None and owner.get("pid") == os.getpid():
            try:
                (self.folder / OWNER_FILE).unlink()
            except OSError:
                pass
        entry[0].release()


def hold_output_dir(owner: object, args) -> RunLock | None:
    """Take the lock of `args.output_dir` for as long as `owner` (the trainer) lives; process 0 only.

    Raises OutputDirInUseError when another process holds it, ConfigError when the folder cannot be written.
    """
    if args.process_index != 0:
        return None
    lock = RunLock(args.output_dir).acquire()
    weakref.finalize(owner, lock.release)
    if lock.previous_owner is not None:
        logger.warning(f"the previous run into {args.output_dir} ({describe_owner(lock.previous_owner)}) did not "
                       "finish: it was killed or crashed. Its complete checkpoints are kept; an interrupted one is "
                       "replaced when a save reaches its step.")
    return lock
