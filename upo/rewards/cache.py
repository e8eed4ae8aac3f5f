"""On-disk cache of designer-reward scores: each (data, function) pair is scored once, ever.

Key: sha256 over the data's content (prompts, chosen, rejected and every extra column) and the
function's identity (name, module, qualname, sha256 of its source code, repr of a callable instance's
parameters, upo version). The key does not see code the function calls or files it reads: after
changing those, delete the cache folder or pass ``use_cache=False``.

File: ``{cache_dir}/{name}-{key[:32]}.json`` holding ``{"function": identity, "chosen": [...],
"rejected": [...]}``, scores as floats or null. Written to a temporary file in the same folder, then
renamed with ``os.replace``, so a concurrent reader sees the whole file or none.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from upo import __version__
from upo.files import atomic_write


def data_fingerprint(prompts: list, chosen: list, rejected: list, extra_columns: dict[str, list]) -> str:
    """sha256 of the data's content; values JSON cannot hold are hashed through their repr."""
    digest = hashlib.sha256()
    columns = {"prompt": prompts, "chosen": chosen, "rejected": rejected, **dict(sorted(extra_columns.items()))}
    for name, values in columns.items():
        digest.update(json.dumps([name, values], default=repr).encode())
    return digest.hexdigest()


def function_identity(func: Callable, name: str) -> dict[str, Any] | None:
    """What decides a function's scores, for the cache key; None when its source code cannot be read.

    Without source (a builtin, code typed into a bare interpreter), an edit could not be noticed, so such
    a function is not cached.
    """
    is_function = inspect.isroutine(func)
    code = func if is_function else type(func)
    try:
        source = inspect.getsource(code)
    except (OSError, TypeError):
        return None
    # A callable instance's parameters count only through a repr of its own: object.__repr__ shows an address.
    has_params_repr = not is_function and type(func).__repr__ is not object.__repr__
    return {"name": name, "module": code.__module__, "qualname": code.__qualname__,
            "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
            "params": repr(func) if has_params_repr else None, "upo_version": __version__}


def cache_file(cache_dir: str | os.PathLike, data_key: str, identity: dict[str, Any]) -> Path:
    """The file that holds the scores of the function with this identity on the data with this fingerprint."""
    key = hashlib.sha256(json.dumps([data_key, identity], sort_keys=True).encode()).hexdigest()
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", identity["name"])  # e.g. "<lambda>"
    return Path(cache_dir) / f"{safe_name}-{key[:32]}.json"


def read_scores(path: Path, n: int) -> tuple[list[float | None], list[float | None]] | None:
    """The cached (chosen, rejected) scores, or None when there are none; a corrupt file is warned about."""
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
        scores = stored["chosen"], stored["rejected"]
        if all(len(s) == n and all(v is None or type(v) is float for v in s) for s in scores):
            return scores
        problem = "wrong number or type of scores"
    except (OSError, ValueError, KeyError, TypeError) as e:
        problem = str(e)
    warnings.warn(f"ignoring corrupt designer-reward cache file {path} ({problem}); scoring again", stacklevel=2)
    return None


def write_scores(path: Path, identity: dict[str, Any], chosen: list, rejected: list) -> None:
    """Write the scores atomically; a failure (read-only disk, full disk) only warns: the run goes on."""
    try:
        atomic_write(path, lambda f: json.dump({"function": identity, "chosen": chosen, "rejected": rejected}, f,
                                               allow_nan=False))
    except OSError as e:
        warnings.warn(f"could not write designer-reward cache file {path} ({e})", stacklevel=2)
