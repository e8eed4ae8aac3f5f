"""Reference log-probs computed once before training, so no reference model runs during training.

They are cached on disk, so a second run on the same data and reference, and the other processes of a
distributed run, read them instead of running the reference again. Key: sha256 over the reference's
weights (names, dtypes, shapes and bytes; with `disable_adapter`, the adapter's weights are left out, since
they play no part), the tokenised pairs, the batch size and padding (they move the last bits of a float),
and the upo version. File: ``{cache_dir}/{key[:32]}.safetensors`` with float32 tensors ``chosen`` and
``rejected`` of shape (N,): safetensors, never a pickle. Written to a temporary file in the same folder,
then renamed with ``os.replace``, so a concurrent reader sees the whole file or none; a lock file beside it
(``{key[:32]}.lock``) makes a second process on the same key wait, then read, instead of computing it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import torch
from datasets import Dataset
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from upo.files import atomic_write, default_cache_dir, exclusive_lock
from upo.logps import forward_logps

TOKEN_COLUMNS = ["prompt_ids", "chosen_ids", "rejected_ids"]


def reference_fingerprint(reference: torch.nn.Module, disable_adapter: bool = False) -> str:
    """sha256 of what decides the reference's outputs: its class, config and weights (adapter left out when off)."""
    digest = hashlib.sha256()
    config = getattr(reference, "config", None)
    digest.update(type(reference).__name__.encode())
    digest.update(json.dumps(config.to_dict() if config is not None else None, sort_keys=True, default=str).encode())
    adapters = set(getattr(reference, "peft_config", {}) or {}) if disable_adapter else set()
    for name, tensor in sorted(reference.state_dict().items()):
        if adapters and adapters & set(name.split(".")):
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # the buffer itself, no copy
    digest.update(b"adapter-off" if disable_adapter else b"as-is")
    return digest.hexdigest()


def data_fingerprint(dataset: Dataset) -> str:
    """sha256 of the tokenised pairs, in order."""
    digest = hashlib.sha256()
    for column in TOKEN_COLUMNS:
        digest.update(json.dumps([column, dataset[column][:]]).encode())
    return digest.hexdigest()


def reference_cache_file(cache_dir: str | os.PathLike, reference_key: str, data_key: str, batch_size: int,
                         collator) -> Path:
    from upo import __version__

    parts = [reference_key, data_key, batch_size, repr(collator), __version__]
    key = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()
    return Path(cache_dir) / f"{key[:32]}.safetensors"


def _read_cache(path: Path, n: int) -> tuple[list[float], list[float]] | None:
    if not path.exists():
        return None
    try:
        stored = load_file(path)
        chosen, rejected = stored["chosen"], stored["rejected"]
        if chosen.shape == rejected.shape == (n,) and bool(torch.isfinite(chosen).all() & torch.isfinite(rejected).all()):
            return chosen.tolist(), rejected.tolist()
        problem = f"shapes {tuple(chosen.shape)}, {tuple(rejected.shape)} for {n} pairs, or non-finite values"
    except (OSError, SafetensorError, KeyError) as error:
        problem = str(error)
    warnings.warn(f"ignoring corrupt reference log-prob cache file {path} ({problem}); computing again")
    return None


def _write_cache(path: Path, chosen: list[float], rejected: list[float]) -> None:
    """Atomic; a failure (read-only or full disk) only warns: the run goes on without the cache."""
    tensors = {"chosen": torch.tensor(chosen, dtype=torch.float32), "rejected": torch.tensor(rejected, dtype=torch.float32)}
    try:
        atomic_write(path, lambda f: f.write(save(tensors, metadata={"format": "upo-reference-logps"})), mode="wb")
    except (OSError, SafetensorError) as error:
        warnings.warn(f"could not write reference log-prob cache file {path} ({error})")


@torch.no_grad()
def add_reference_logps(dataset: Dataset, reference, collator, batch_size: int, disable_adapter: bool = False,
                        cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> Dataset:
    """Adds `ref_chosen_logps` and `ref_rejected_logps` (summed log-probs of each response under `reference`).

    A dataset that already has both columns (the user brought them) is returned unchanged. With
    `disable_adapter`, `reference` is a PEFT model whose base model, adapter off, is the reference.
    `cache_dir` defaults to ``default_cache_dir() / "reference"``; see the module docstring.
    """
    if {"ref_chosen_logps", "ref_rejected_logps"} <= set(dataset.column_names):
        return dataset
    if not use_cache:
        return _add_computed(dataset, reference, collator, batch_size, disable_adapter, None)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "reference"
    path = reference_cache_file(folder, reference_fingerprint(reference, disable_adapter), data_fingerprint(dataset),
                                batch_size, collator)
    with contextlib.suppress(OSError):  # a read-only cache folder: computed, not cached (`_write_cache` warns)
        folder.mkdir(parents=True, exist_ok=True)
    # Two runs on the same data and reference (two frontier workers, say): the second waits and reads the cache.
    with exclusive_lock(path.with_suffix(".lock"), f"Waiting for another process computing reference log-probs {path.name}..."):
        cached = _read_cache(path, len(dataset))
        if cached is not None:
            print(f"Reference log-probs of {len(dataset)} pairs: read from the cache {path}")
            return dataset.add_column("ref_chosen_logps", cached[0]).add_column("ref_rejected_logps", cached[1])
        return _add_computed(dataset, reference, collator, batch_size, disable_adapter, path)


def _add_computed(dataset: Dataset, reference, collator, batch_size: int, disable_adapter: bool, path: Path | None):
    start = time.perf_counter()
    chosen, rejected = _compute(dataset, reference, collator, batch_size, disable_adapter)
    where = ""
    if path is not None:
        _write_cache(path, chosen, rejected)
        where = f", cached in {path}"
    print(f"Reference log-probs of {len(dataset)} pairs: computed in {time.perf_counter() - start:.1f} s{where}")
    return dataset.add_column("ref_chosen_logps", chosen).add_column("ref_rejected_logps", rejected)


def _compute(dataset: Dataset, reference, collator, batch_size: int, disable_adapter: bool):
    was_training = reference.training
    reference.eval()
    device = next(reference.parameters()).device
    loader = DataLoader(dataset.select_columns(TOKEN_COLUMNS), batch_size=batch_size, collate_fn=collator, shuffle=False)
    chosen, rejected = [], []
    adapter_off = reference.disable_adapter() if disable_adapter else contextlib.nullcontext()
    with adapter_off:
        for batch in tqdm(loader, desc="Computing reference log-probs"):
            batch = {k: v.to(device) for k, v in batch.items()}
            logps = forward_logps(reference, batch).logps
            c, r = logps.float().cpu().chunk(2)
            chosen += c.tolist()
            rejected += r.tolist()
    reference.train(was_training)
    return chosen, rejected
