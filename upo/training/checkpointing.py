"""Checkpoints that a kill can never leave half-written for a resume to trip on.

`transformers.Trainer` writes a checkpoint file by file into `checkpoint-N/`: a SIGKILL, an out-of-memory
kill or a full disk in the middle leaves a folder that looks like a checkpoint and fails (or silently
misbehaves) on resume. Here every checkpoint gets a completion marker, `upo_checkpoint.json`, written
atomically (temporary file, then `os.replace`) after every file of every rank is on disk; it lists each
file with its size and sha256. A folder without a valid marker, or with a file whose size or content no longer
matches it (a disk fault, a copy cut short, an edit), is incomplete:

* `resume_from_checkpoint=True` picks the last *complete* checkpoint (transformers would take the
  highest-numbered folder, complete or not);
* an explicit path to an incomplete checkpoint is refused with the reason and the complete one to use;
* a save that finds an incomplete folder of the same name (left by a killed save) deletes it first, so
  no stale file survives into the new checkpoint.

The hashes cost one read of the checkpoint when it is saved and when it is resumed from (the files are hashed
in parallel threads: hashlib releases the GIL). Markers written by upo before hashes were recorded list sizes
only; such a checkpoint is still resumable, checked by size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from upo.errors import ConfigError, Interrupted, UPOError, interruption
from upo.files import atomic_write_json
from upo.logs import get_logger
from upo.run_folder import CHECKPOINT_MARKER as MARKER_FILE

logger = get_logger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 23):
            digest.update(block)
    return digest.hexdigest()


def _hash_all(paths: list[Path]) -> list[str]:
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(file_sha256, paths))


def write_completion_marker(folder: str | os.PathLike, global_step: int) -> None:
    """Mark `folder` complete: call once every file of the checkpoint is written (by every rank)."""
    folder = Path(folder)
    paths = [path for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MARKER_FILE]
    files = {str(path.relative_to(folder)): {"size": path.stat().st_size, "sha256": digest}
             for path, digest in zip(paths, _hash_all(paths))}
    atomic_write_json(folder / MARKER_FILE, {"global_step": global_step, "files": files})


def incomplete_reason(folder: str | os.PathLike) -> str | None:
    """Why `folder` is not a complete checkpoint, or None when it is."""
    folder = Path(folder)
    if not folder.is_dir():
        return "it is not a folder"
    marker = folder / MARKER_FILE
    if not marker.is_file():
        return f"it has no {MARKER_FILE} (the save was interrupted, or another tool wrote it)"
    try:
        files = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"its {MARKER_FILE} is unreadable ({error})"
    if not isinstance(files, dict):
        return f"its {MARKER_FILE} is unreadable (no list of files)"
    hashed = []
    for name, recorded in files.items():
        path = folder / name
        # {"size", "sha256"}; markers written before hashes were recorded hold the size alone
        size, digest = (recorded, None)
        if isinstance(recorded, dict):
            size, digest = recorded.get("size"), recorded.get("sha256")
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} were written"
        if digest is not None:
            hashed.append((name, path, digest))
    for (name, _, digest), found in zip(hashed, _hash_all([path for _, path, _ in hashed])):
        if found != digest:
            return (f"{name} does not hold what was written (its sha256 changed: a disk fault, a copy cut short, or "
                    "an edit)")
    return None


def checkpoint_folders(output_dir: str | os.PathLike) -> list[Path]:
    """The `checkpoint-N` folders of `output_dir`, by step, complete or not."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p)
             for p in output_dir.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name)) and p.is_dir()]
    return [path for _, path in sorted(found)]


def last_complete_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step, or None (checked from the last one down)."""
    return next((p for p in reversed(checkpoint_folders(output_dir)) if incomplete_reason(p) is None), None)


def resolve_resume_checkpoint(resume_from_checkpoint, output_dir: str | os.PathLike) -> str | None:
    """What `train(resume_from_checkpoint=...)` should load: a complete checkpoint's path, or None.

    `True` (or the strings "true" / "last", as a CLI or YAML gives them) means the last complete
    checkpoint of `output_dir`. A path is checked and refused, naming the reason and the alternative, when
    it is incomplete.
    """
    if resume_from_checkpoint in (None, False):
        return None
    if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.strip().lower() in ("true", "last"):
        resume_from_checkpoint = True
    if resume_from_checkpoint is True:
        found, skipped = None, []
        for folder in reversed(checkpoint_folders(output_dir)):
            reason = incomplete_reason(folder)
            if reason is None:
                found = folder
                break
            skipped.append(f"{folder.name} ({reason})")
        if found is not None and skipped:
            logger.warning(f"Resuming from {found}, the last complete checkpoint; skipped {'; '.join(skipped)}.")
        if found is None:
            folders = [p.name for p in checkpoint_folders(output_dir)]
            detail = f"only incomplete ones ({', '.join(folders)})" if folders else "none"
            raise ConfigError(
                f"resume_from_checkpoint=True: no complete checkpoint in {output_dir}; found {detail}. Pass the "
                f"path of a checkpoint folder explicitly, or start a new run."
            )
        return str(found)
    path = Path(resume_from_checkpoint)
    reason = incomplete_reason(path)
    if reason is not None:
        last = last_complete_checkpoint(path.parent) if path.parent.is_dir() else None
        fix = f"Resume from {last} instead (resume_from_checkpoint=True picks it)." if last else (
            "No complete checkpoint is next to it.")
        raise ConfigError(f"Cannot resume from {path}: not a complete upo checkpoint, {reason}. {fix}")
    return str(path)


class SaveError(UPOError):
    """A checkpoint or the final model could not be written (a full disk, a read-only or vanished folder)."""


LOW_SPACE = 64 * 2**20  # below this, a failed write is taken for a full disk


def write_failure_reason(error: BaseException, folder: str | os.PathLike) -> str | None:
    """Why writing into `folder` failed, when it is the disk's fault; None when it looks like a bug.

    torch reports a full disk as "basic_ios::clear: iostream error" and safetensors as an error of its own, neither
    an OSError: what the disk itself says (its free space) decides, at the one place that knows it was writing.
    """
    if isinstance(error, OSError) and error.errno is not None:
        return error.strerror or os.strerror(error.errno)
    try:
        free = shutil.disk_usage(Path(folder) if Path(folder).exists() else Path(folder).parent).free
    except OSError:
        free = None
    if free is not None and free < LOW_SPACE:
        return f"No space left on device ({free / 2**20:.1f} MiB free on the disk that holds it)"
    if isinstance(error, OSError):
        return " ".join(str(error).split())
    return None


@contextlib.contextmanager
def explaining_save_failures(what: str, folder: str | os.PathLike, output_dir: str | os.PathLike, cleanup=None):
    """Around a save: a failure the disk caused becomes a SaveError saying what was kept and how to go on.

    `cleanup()` removes what the interrupted save wrote (an incomplete checkpoint is useless, and takes space).
    """
    try:
        yield
    except UPOError:
        raise
    except Exception as error:
        reason = write_failure_reason(error, folder)
        if reason is None:
            raise
        if cleanup is not None:
            with contextlib.suppress(OSError):
                cleanup()
        last = last_complete_checkpoint(output_dir)
        kept = f"the last complete checkpoint is {last}" if last else "no complete checkpoint was saved yet"
        resume = ", then resume with resume_from_checkpoint=True" if last else ", then start the run again"
        raise SaveError(f"Could not write {what} {folder}: {reason}. The run stopped; {kept}, and what this save had "
                        f"written was removed. Free some space (or choose another output_dir){resume}.") from error


def remove_written_since(folder: str | os.PathLike, start: float) -> None:
    """Delete the files directly in `folder` modified since `start` (the run lock's files excepted): the part of an
    interrupted final save that got written, which would otherwise look like a trained model. The run holds the
    folder's lock (upo.training.run_lock), so no other run wrote them."""
    for path in Path(folder).iterdir():
        if path.is_file() and not path.name.startswith(".upo-run") and path.stat().st_mtime >= start:
            path.unlink()


@contextlib.contextmanager
def noting_interruption(output_dir: str | os.PathLike, step):
    """Around training: Ctrl-C (or SIGTERM, a `Terminated`) becomes an `Interrupted` saying at which step, what was
    kept and how to go on.

    Nothing is half-written by an interruption: a checkpoint counts only once its marker is written (see above).
    """
    try:
        yield
    except KeyboardInterrupt as error:
        if isinstance(error, Interrupted) and str(error):  # it names what was running already
            raise
        last = last_complete_checkpoint(output_dir)
        kept = (f"the last complete checkpoint is {last}: resume with resume_from_checkpoint=True "
                "(--resume_from_checkpoint true)" if last else "no checkpoint was saved yet")
        raise interruption(f"during training at step {step()} of {output_dir}; {kept}", error) from error


@contextlib.contextmanager
def refusing_unsafe_pickles(checkpoint: str | None):
    """Around a resume: a checkpoint file that torch's weights_only loading refuses becomes a ConfigError naming it.

    transformers reads optimizer.pt, scheduler.pt and rng_state.pth with `torch.load(weights_only=True)`, which
    refuses a pickle that would run code; its message is a page of advice for trusting the file, which we do not.
    """
    try:
        yield
    except pickle.UnpicklingError as error:
        if checkpoint is None:
            raise
        raise ConfigError(
            f"Cannot resume from {checkpoint}: one of its pickled files (optimizer.pt, scheduler.pt, rng_state.pth) "
            "holds more than tensors and would run code when read; torch's weights_only loading refused it. The "
            "checkpoint was not written by this training (or was tampered with): resume from one you wrote, or start "
            "a new run.") from error


def remove_if_incomplete(folder: str | os.PathLike) -> bool:
    """Delete `folder` when it exists but is not a complete checkpoint; True when something was deleted."""
    folder = Path(folder)
    if folder.is_dir() and incomplete_reason(folder) is not None:
        shutil.rmtree(folder)
        return True
    return False
