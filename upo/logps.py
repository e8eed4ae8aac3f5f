"""One forward pass of a causal LM over chosen and rejected together, down to per-response log-probs."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ForwardOutput:
    logps: torch.Tensor  # (2B,) summed log-probs of each response's tokens, chosen then rejected
    lengths: torch.Tensor  # (2B,) number of response tokens
    hidden_states: torch.Tensor  # (2B, L, H) last hidden state (after the final norm)
    per_token_logps: torch.Tensor  # (2B, L - 1) log-prob of token t + 1, 0 outside the responses


def gather_token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`log softmax(logits)[label]` without materialising the log-softmax. Shapes: (N, V), (N,) -> (N,)"""
    logits = logits.float()
    return logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def forward_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor) -> ForwardOutput:
    """Policy (or reference) log-probs of the response tokens.

    The model is asked for its last hidden state and no logits (`logits_to_keep=1`); the LM head is then
    applied here, which gives the value head its input for free.

    Args:
        input_ids, attention_mask, completion_mask: Shape: (2B, L); `completion_mask` marks response tokens.
    """
    outputs = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        use_cache=False,
        output_hidden_states=True,
        logits_to_keep=1,
    )
    hidden = outputs.hidden_states[-1]
    logits = model.get_output_embeddings()(hidden[:, :-1])
    softcap = getattr(model.config, "final_logit_softcapping", None)
    if softcap:  # Gemma 2/3 cap their logits; applying the bare head would give other log-probs
        logits = torch.tanh(logits / softcap) * softcap
    labels = input_ids[:, 1:]
    mask = completion_mask[:, 1:].to(hidden.dtype)
    per_token = gather_token_logps(logits, labels) * mask
    return ForwardOutput(
        logps=per_token.sum(-1),
        lengths=mask.sum(-1),
        hidden_states=hidden,
        per_token_logps=per_token,
    )
