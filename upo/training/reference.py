"""Reference log-probs computed once before training, so no reference model runs during training.

Computed where training runs, as TRL does: after the Trainer has placed the model on its device, under its
autocast (bf16 / fp16), and split across processes: each process runs the reference on its share of the
batches (accelerate's data-loader sharding), then the shares are gathered, so every process holds all of them.
Computed as the policy's will be, so that at learning rate 0 the implicit rewards are 0: the same `forward_logps`
(its LM head in its weights' dtype, outside autocast), and under FSDP2 with a mixed precision policy on a copy
whose weights are in the policy's compute dtype (FSDP2 casts them so in each forward; it shards only later).

They are cached on disk, so a second run on the same data and reference reads them instead of running the reference
again. Key: sha256 over the reference's weights (names, dtypes, shapes and bytes; with `disable_adapter`, the
adapter's weights are left out, since they play no part; upo's value head too), the tokenised pairs, the batch size
and padding (they move the last bits of a float), the mixed precision when there is one (and FSDP2's weight dtype),
and the upo version. File: ``{cache_dir}/{key[:32]}.safetensors`` with float32 tensors ``chosen`` and ``rejected``
of shape (N,): safetensors, never a pickle. Written to a temporary file in the same folder, then renamed with
``os.replace``, so a concurrent reader sees the whole file or none; a lock file beside it (``{key[:32]}.lock``)
makes a second run on the same key wait, then read, instead of computing it again. Under several processes the main
process holds the lock, reads and writes the cache, and tells the others what it found (a broadcast), so they never
read a file a slower file system has not shown them yet.
"""

from __future__ import annotations

import contextlib
import copy
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

from upo import __version__
from upo.files import atomic_write, default_cache_dir, exclusive_lock
from upo.logps import forward_logps
from upo.logs import get_logger

logger = get_logger(__name__)

TOKEN_COLUMNS = ["prompt_ids", "chosen_ids", "rejected_ids"]
VALUE_HEAD_MODULE = "upo_value_head"  # upo.trainer.VALUE_HEAD_PREFIX without its dot


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
        if name.startswith(VALUE_HEAD_MODULE + ".") or f".{VALUE_HEAD_MODULE}." in name:  # V(x) plays no part
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
                         collator, mixed_precision: str = "no") -> Path:
    parts = [reference_key, data_key, batch_size, repr(collator), __version__]
    if mixed_precision != "no":  # autocast moves the values; fp32 keys stay what they were
        parts.append(mixed_precision)
    key = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()
    return Path(cache_dir) / f"{key[:32]}.safetensors"


def _read_cache(path: Path, n: int) -> tuple[list[float], list[float]] | None:
    if not path.exists():
        return None
    try:
        stored = load_file(path)
        chosen, rejected = stored["chosen"], stored["rejected"]
        if (chosen.shape == rejected.shape == (n,)
                and bool(torch.isfinite(chosen).all() & torch.isfinite(rejected).all())):
            return chosen.tolist(), rejected.tolist()
        problem = f"shapes {tuple(chosen.shape)}, {tuple(rejected.shape)} for {n} pairs, or non-finite values"
    except (OSError, SafetensorError, KeyError) as error:
        problem = str(error)
    warnings.warn(f"ignoring corrupt reference log-prob cache file {path} ({problem}); computing again", stacklevel=2)
    return None


def _write_cache(path: Path, chosen: list[float], rejected: list[float]) -> None:
    """Atomic; a failure (read-only or full disk) only warns: the run goes on without the cache."""
    tensors = {"chosen": torch.tensor(chosen, dtype=torch.float32),
               "rejected": torch.tensor(rejected, dtype=torch.float32)}
    try:
        atomic_write(path, lambda f: f.write(save(tensors, metadata={"format": "upo-reference-logps"})), mode="wb")
    except (OSError, SafetensorError) as error:
        warnings.warn(f"could not write reference log-prob cache file {path} ({error})", stacklevel=2)


@torch.no_grad()
def add_reference_logps(dataset: Dataset, reference, collator, batch_size: int, disable_adapter: bool = False,
                        cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                        accelerator=None, show_progress: bool = True) -> Dataset:
    """Adds `ref_chosen_logps` and `ref_rejected_logps` (summed log-probs of each response under `reference`).

    A dataset that already has both columns (the user brought them) is returned unchanged. With
    `disable_adapter`, `reference` is a PEFT model whose base model, adapter off, is the reference. With an
    `accelerate.Accelerator` (the trainer's), the reference runs on its device under its autocast, each process
    on its share of the batches, and every process gets all the values; every process must call this together.
    `show_progress`: a progress bar (on the main process only).
    `cache_dir` defaults to ``default_cache_dir() / "reference"``; see the module docstring.
    """
    if {"ref_chosen_logps", "ref_rejected_logps"} <= set(dataset.column_names):
        return dataset
    main = accelerator is None or accelerator.is_main_process
    precision = str(getattr(accelerator, "mixed_precision", "no") or "no")
    if sharded_compute_dtype(accelerator, reference) is not None:  # computed on weights cast as FSDP2 will cast them
        precision += f", weights in {sharded_compute_dtype(accelerator, reference)}"
    with contextlib.ExitStack() as held:
        cached, path = None, None
        if use_cache and main:
            folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "reference"
            path = reference_cache_file(folder, reference_fingerprint(reference, disable_adapter),
                                        data_fingerprint(dataset), batch_size, collator, precision)
            with contextlib.suppress(OSError):  # a read-only cache folder: computed, not cached (`_write_cache` warns)
                folder.mkdir(parents=True, exist_ok=True)
            # Two runs on the same data and reference (two frontier workers, say): the second waits and reads the cache.
            waiting = f"Waiting for another process computing reference log-probs {path.name}..."
            held.enter_context(exclusive_lock(path.with_suffix(".lock"), waiting))
            cached = _read_cache(path, len(dataset))
        if accelerator is not None and accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            cached = broadcast_object_list([cached])[0]  # the main process's answer, for every process
        if cached is not None:
            if main:
                logger.info(f"Reference log-probs of {len(dataset)} pairs: read from the cache {path}")
            chosen, rejected = cached
        else:
            start = time.perf_counter()
            chosen, rejected = _compute(dataset, reference, collator, batch_size, disable_adapter, accelerator,
                                        show_progress)
            where = ""
            if path is not None:
                _write_cache(path, chosen, rejected)
                where = f", cached in {path}"
            processes = accelerator.num_processes if accelerator is not None else 1
            if main:
                split = f" over {processes} processes" if processes > 1 else ""
                logger.info(f"Reference log-probs of {len(dataset)} pairs: computed in "
                            f"{time.perf_counter() - start:.1f} s{split}{where}")
    return dataset.add_column("ref_chosen_logps", chosen).add_column("ref_rejected_logps", rejected)


@contextlib.contextmanager
def _on_device(model: torch.nn.Module, device: torch.device):
    """`model` on `device` for the block, then back where it was. The Trainer places the model on its device itself
    except under FSDP and DeepSpeed, which do it when training starts (a model with a device map stays as it is)."""
    first = next(model.parameters(), None)
    if first is None or first.device == device or getattr(model, "hf_device_map", None):
        yield
        return
    model.to(device)
    try:
        yield
    finally:
        model.to(first.device)


def sharded_compute_dtype(accelerator, reference) -> torch.dtype | None:
    """The dtype FSDP2's mixed precision policy will cast the weights to in each forward (bf16, fp16), where it has
    one and it is not the reference's own."""
    from accelerate.utils import DistributedType

    if accelerator is None or accelerator.distributed_type != DistributedType.FSDP:
        return None
    dtype = getattr(getattr(accelerator.state.fsdp_plugin, "mixed_precision_policy", None), "param_dtype", None)
    weights = next(reference.parameters(), None)
    if dtype is None or weights is None or not weights.is_floating_point() or weights.dtype == dtype:
        return None
    return dtype


def _compute(dataset: Dataset, reference, collator, batch_size: int, disable_adapter: bool, accelerator=None,
             show_progress: bool = True):
    dtype = sharded_compute_dtype(accelerator, reference)
    if dtype is not None:
        # The policy will run sharded, its weights cast to `dtype` in each forward (FSDP2's MixedPrecisionPolicy,
        # which leaves buffers such as the rotary frequencies as they are); the reference is computed before that,
        # unsharded: on a copy whose weights are cast so, so it computes as the policy will.
        reference = copy.deepcopy(reference)
        for p in reference.parameters():
            p.data = p.data.to(dtype)
    was_training = reference.training
    reference.eval()
    loader = DataLoader(dataset.select_columns(TOKEN_COLUMNS), batch_size=batch_size, collate_fn=collator,
                        shuffle=False)
    if accelerator is not None:
        device, autocast = accelerator.device, accelerator.autocast
        # Each process gets every num_processes-th batch; a short last round is padded with repeated rows, which
        # gather_for_metrics drops again, so the gathered values are the dataset's, in order.
        loader = accelerator.prepare_data_loader(loader)
    else:
        first = next(reference.parameters(), None)
        device, autocast = (first.device if first is not None else torch.device("cpu")), contextlib.nullcontext
    chosen, rejected = [], []
    adapter_off = reference.disable_adapter() if disable_adapter else contextlib.nullcontext()
    show = show_progress and (accelerator is None or accelerator.is_main_process)
    with adapter_off, _on_device(reference, device), autocast():
        for batch in tqdm(loader, desc="Computing reference log-probs", disable=not show):
            batch = {k: v.to(device) for k, v in batch.items()}
            c, r = forward_logps(reference, batch).logps.float().chunk(2)
            if accelerator is not None:
                c, r = accelerator.gather_for_metrics((c.contiguous(), r.contiguous()))
            chosen += c.cpu().tolist()
            rejected += r.cpu().tolist()
    reference.train(was_training)
    if len(chosen) != len(dataset):  # a sharding that lost or repeated rows would misalign every pair after it
        raise RuntimeError(f"reference log-probs for {len(chosen)} pairs, but the dataset has {len(dataset)}")
    return chosen, rejected
