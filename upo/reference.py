"""Reference log-probs computed once before training, so no reference model runs during training."""

from __future__ import annotations

import contextlib

import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .logps import forward_logps


@torch.no_grad()
def add_reference_logps(dataset: Dataset, reference, collator, batch_size: int, disable_adapter: bool = False) -> Dataset:
    """Adds `ref_chosen_logps` and `ref_rejected_logps` (summed log-probs of each response under `reference`).

    A dataset that already has both columns (the user brought them) is returned unchanged. With
    `disable_adapter`, `reference` is a PEFT model whose base model, adapter off, is the reference.
    """
    if {"ref_chosen_logps", "ref_rejected_logps"} <= set(dataset.column_names):
        return dataset
    was_training = reference.training
    reference.eval()
    device = next(reference.parameters()).device
    columns = ["prompt_ids", "chosen_ids", "rejected_ids"]
    loader = DataLoader(dataset.select_columns(columns), batch_size=batch_size, collate_fn=collator, shuffle=False)
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
    return dataset.add_column("ref_chosen_logps", chosen).add_column("ref_rejected_logps", rejected)
