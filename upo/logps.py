"""One forward pass of a causal LM over a batch of pairs, down to the summed log-prob of each response."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch.distributed.fsdp import FSDPModule
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint


@dataclass
class ForwardOutput:
    logps: torch.Tensor  # (2B,) summed log-probs of each response's tokens, chosen then rejected
    lengths: torch.Tensor  # (2B,) number of response tokens
    prompt_hidden: torch.Tensor  # (B, H) last hidden state at each pair's last prompt token
    # (N, 3) for each response token, detached: the entropy of the next-token distribution, the mean logit over the
    # vocabulary, and 1 where the target is the top-1 token (`token_statistics`); None unless asked for.
    token_stats: torch.Tensor | None = None


def logit_transform(config) -> tuple[float, float | None]:
    """`(scale, softcap)` that the model's own forward applies after its LM head (1.0, None for most models).

    Cohere-style models multiply the logits (`logit_scale`, `output_multiplier`, `lm_head_multiplier`), Granite
    divides them (`logits_scaling`), Gemma 2/3 cap them (`final_logit_softcapping`): applying the bare head
    would give other log-probs.
    """
    config = config.get_text_config()
    scale = next((getattr(config, k) for k in ("logit_scale", "output_multiplier", "lm_head_multiplier")
                  if getattr(config, k, None) is not None), None)
    if scale is None and getattr(config, "logits_scaling", None):
        scale = config.logits_scaling if config.model_type == "hyperclovax" else 1 / config.logits_scaling
    return (1.0 if scale is None else scale), getattr(config, "final_logit_softcapping", None)


def _project(head: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """`head(hidden)`. Under FSDP2 the head's unit is still gathered after the model's forward (accelerate shards the
    final norm, embeddings and head as one unit kept gathered): its weights are used as they are, since calling the
    module a second time would run FSDP's hooks again outside the model's forward (torch 2.13 then crashes in the
    backward pass)."""
    weight = getattr(head, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.is_floating_point() and hidden.dtype != weight.dtype:
        # bf16 weights under bf16 autocast (TRL's GPU recipe): accelerate hands the forward's outputs back in float32,
        # and the head, applied outside that forward, runs in its weights' dtype as the model's own head would.
        hidden = hidden.to(weight.dtype)
    if isinstance(head, FSDPModule) and isinstance(head, torch.nn.Linear):
        return F.linear(hidden, head.weight, head.bias)
    return head(hidden)


def _token_logps(hidden: torch.Tensor, targets: torch.Tensor, head: torch.nn.Module, transform,
                 statistics: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`log softmax(head(hidden))[target]`, without materialising the log-softmax, and with `statistics` the
    `ForwardOutput.token_stats` of the same logits (no gradient). Shapes: (N, H), (N,) -> (N,), (N, 3)

    The head runs in its weights' dtype whether or not the caller is under autocast: the policy's runs outside
    autocast (accelerate puts only the model's forward under it), the precomputed reference's inside it, and the
    same head in bf16 there would shift every reference log-prob (by 0.29 nats on a 200-token text with SmolLM2-135M,
    measured: 0.029 on its implicit reward at beta 0.1 before any training).
    """
    scale, softcap = transform
    device = hidden.device.type
    with torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext():
        logits = _project(head, hidden).float()
    if scale != 1.0:
        logits = logits * scale
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    log_normalizer = torch.logsumexp(logits, dim=-1)
    logps = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_normalizer
    return logps, _logit_statistics(logits.detach(), targets) if statistics else None


@torch.no_grad()
def _logit_statistics(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each token's entropy, mean logit and top-1 hit, as TRL's fused LM head computes them (ties: only the first
    maximum is the top-1). Shapes: (N, V), (N,) -> (N, 3)

    A few rows at a time, each block small enough to stay in the CPU's cache: over the whole (N, V) array at once the
    softmax, product and sums cost half a head matmul (SmolLM2's vocabulary, one thread); by blocks, a seventh of it.
    """
    stats = logits.new_empty(len(targets), 3)
    rows = max(1, 2**17 // logits.shape[-1])
    for i in range(0, len(targets), rows):
        block, target = logits[i : i + rows], targets[i : i + rows]
        top = block.amax(-1)
        exps = (block - top[:, None]).exp_()
        total = exps.sum(-1)
        stats[i : i + rows, 0] = total.log() + top - exps.mul_(block).sum(-1) / total  # log Z - E_p[z]
        stats[i : i + rows, 1] = block.mean(-1)
        hit = block.gather(-1, target[:, None]).squeeze(-1) >= top
        if hit.any():  # a tie with an earlier token is not a hit
            hit[hit.clone()] = block[hit].argmax(-1) == target[hit]
        stats[i : i + rows, 2] = hit.to(stats.dtype)
    return stats


def token_logps(hidden, targets, head, chunk_size: int | None = None, transform=(1.0, None),
                statistics: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (and with `statistics` the token statistics), the LM head applied `chunk_size` tokens at a
    time.

    Each chunk is recomputed in the backward pass instead of being stored, so the (N, vocabulary) float32
    logits never exist at once: memory falls from N * V to chunk_size * V for one more head matmul.
    """
    if not chunk_size or len(targets) <= chunk_size or not torch.is_grad_enabled():
        return _token_logps(hidden, targets, head, transform, statistics)
    chunks = [
        checkpoint(_token_logps, hidden[i : i + chunk_size], targets[i : i + chunk_size], head, transform,
                   statistics, use_reentrant=False)
        for i in range(0, len(targets), chunk_size)
    ]
    logps = torch.cat([c[0] for c in chunks])
    return logps, torch.cat([c[1] for c in chunks]) if statistics else None


def forward_logps(model, batch: dict[str, torch.Tensor], chunk_size: int | None = None,
                  statistics: bool = False) -> ForwardOutput:
    """Policy (or reference) log-probs of every response in a batch built by `PreferenceCollator`, and with
    `statistics` each response token's `token_stats` (for the logged metrics; no second forward).

    The model is asked for its last hidden state and no logits (`logits_to_keep=1`); the LM head is then
    applied to the response tokens only, never to the prompt or to padding.
    """
    mask = batch["attention_mask"]
    if mask.dim() == 4:  # a boolean mask of allowed keys -> the additive mask attention implementations take
        dtype = next(model.parameters()).dtype
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    outputs = model(
        input_ids=batch["input_ids"],
        attention_mask=mask,
        position_ids=batch["position_ids"],
        use_cache=False,
        output_hidden_states=True,
        logits_to_keep=1,
    )
    hidden = outputs.hidden_states[-1]
    flat = hidden.reshape(-1, hidden.shape[-1])
    base = model
    while isinstance(getattr(base, "module", None), torch.nn.Module):  # DDP or a DeepSpeed engine: the model inside
        base = base.module
    per_token, stats = token_logps(
        flat[batch["logit_index"]], batch["target_ids"], base.get_output_embeddings(), chunk_size,
        logit_transform(base.config), statistics,
    )
    n_responses = 2 * len(batch["prompt_last_index"])
    index = batch["response_index"]
    logps = per_token.new_zeros(n_responses).index_add(0, index, per_token)
    lengths = torch.bincount(index, minlength=n_responses).to(per_token.dtype)
    return ForwardOutput(logps=logps, lengths=lengths, prompt_hidden=flat[batch["prompt_last_index"]],
                         token_stats=stats)


def token_statistics(token_stats: torch.Tensor, response_index: torch.Tensor, n_rows: int,
                     labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """TRL 1.16's token metrics as `(sum, count)` pairs, to add up over processes before dividing (as TRL does):

    * `entropy`: over every response token (for unpaired rows, the completions' only: the second slot of a row is
      for KTO's KL estimate);
    * `logits/chosen`, `logits/rejected`: the mean logit over the vocabulary, averaged over the chosen (for unpaired
      rows, desirable) and the rejected (undesirable) response tokens;
    * `mean_token_accuracy`: the share of the chosen tokens whose target is the top-1 token (pairs only, as TRL's
      DPOTrainer; its KTOTrainer does not log it).

    Args:
        token_stats: `ForwardOutput.token_stats`. Shape: (N, 3)
        response_index: each token's response, in [0, 2B), the first slot of every row first. Shape: (N,)
        n_rows: `B`.
        labels: for unpaired rows, 1 desirable, 0 undesirable. Shape: (B,)
    Returns:
        name -> `[sum, count]`. Shape: (2,) each
    """
    first = response_index < n_rows
    if labels is None:
        chosen, rejected, counted = first, ~first, torch.ones_like(first)
    else:
        desirable = labels.to(torch.bool)[response_index.clamp(max=n_rows - 1)]
        chosen, rejected, counted = first & desirable, first & ~desirable, first

    def total(column: int, mask: torch.Tensor) -> torch.Tensor:
        return torch.stack([token_stats[mask, column].sum(), mask.sum().to(token_stats.dtype)])

    stats = {"entropy": total(0, counted), "logits/chosen": total(1, chosen), "logits/rejected": total(1, rejected)}
    if labels is None:
        stats["mean_token_accuracy"] = total(2, chosen)
    return stats
