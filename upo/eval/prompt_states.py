"""A generation batch's prompt pass, kept, so that what follows the prompts is computed without running them again.

An evaluation runs every model over the same prompts three times: generating (its prefill), the KL (the reference
along each reply) and the implicit-reward accuracy (the model and the reference along each held-out pair's chosen and
rejected responses, which follow the same prompt). The prompts are most of those tokens (55% of the chit-chat pairs'
and all of the KL's but the reply). Here:

* `PromptStates`: one batch's left-padded prompts, every layer's key and value states at every prompt position (the
  cache `generate` returns, cut where the prompts end) and the logits at the last prompt position (generation's first
  step): what a forward over the prompts leaves for the tokens after them;
* `continue_prompts`: a model's forward over tokens that follow those prompts, on a fresh cache holding their states;
* `ReferencePrompts`: the reference's states per batch, kept in memory once computed (up to `KEPT_BYTES`), so that
  each run's KL runs the reference over its reply positions alone.

A continuation gives what one forward over prompt and continuation together gives, up to floating-point summation
order (its matmuls and attention run over other shapes). Where a model's cache is not a plain `DynamicCache` of
full-attention layers (a sliding window, a quantised cache), no states are taken and every caller runs the whole
sequence instead, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# The reference's prompt states kept in memory per process at most (SmolLM2-135M: 46 KB per prompt position, 0.3 GB
# for 96 chit-chat prompts in batches of 32); batches beyond it are run again for each run that needs them.
KEPT_BYTES = 2 * 1024**3


def _device(model) -> torch.device:
    return next(model.parameters()).device


def generation_cache(generated):
    """The cache of a `generate` output (`cache` since transformers 5.24, `past_key_values` before)."""
    keys = generated.keys()
    return next((generated[name] for name in ("cache", "past_key_values") if name in keys), None)


def cache_argument(model) -> str:
    """The name a model's forward takes its cache by (`cache` since transformers 5.24, `past_key_values` before)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def prompt_kv(cache, length: int) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """Each layer's (keys, values) at the first `length` positions of `cache`, shape (B, heads, length, head_dim);
    None when `cache` is not a `DynamicCache` of full-attention layers holding them all."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    layers = getattr(cache, "layers", None) if type(cache) is DynamicCache else None
    if not layers or any(type(layer) is not DynamicLayer or getattr(layer, "keys", None) is None
                         or layer.keys.dim() != 4 or layer.keys.shape[-2] < length for layer in layers):
        return None
    return [(layer.keys[..., :length, :], layer.values[..., :length, :]) for layer in layers]


@dataclass
class PromptStates:
    """One batch of left-padded prompts as a model saw them.

    input_ids, attention_mask: the prompts, left-padded. Shape: (B, P)
    kv: per layer, the keys and values at the prompt positions. Shape: (B, heads, P, head_dim) each
    last_logits: the logits at the last prompt position (float32). Shape: (B, V)
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    last_logits: torch.Tensor

    @classmethod
    def from_generation(cls, input_ids: torch.Tensor, attention_mask: torch.Tensor, generated,
                        num_return_sequences: int = 1) -> PromptStates | None:
        """The prompt states of a `model.generate(..., output_logits=True, return_dict_in_generate=True)` output on
        these prompts (its cache cut at the prompts' end, its first step's logits); None where the cache is not one
        whose states can be taken."""
        kv = prompt_kv(generation_cache(generated), input_ids.shape[1])
        if kv is None or not getattr(generated, "logits", None):
            return None
        last = generated.logits[0]
        if num_return_sequences > 1:  # each prompt's rows are copies: keep the first of each
            first = torch.arange(0, len(input_ids) * num_return_sequences, num_return_sequences, device=last.device)
            kv = [(k.index_select(0, first.to(k.device)), v.index_select(0, first.to(v.device))) for k, v in kv]
            last = last.index_select(0, first)
        return cls(input_ids, attention_mask, kv, last)

    def kept_copy(self) -> PromptStates:
        """A compact copy (the states of a generated batch are views of its whole cache, prompts and replies)."""
        return PromptStates(self.input_ids.clone(), self.attention_mask.clone(),
                            [(k.contiguous().clone(), v.contiguous().clone()) for k, v in self.kv],
                            self.last_logits.clone())

    def same_prompts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> bool:
        device = self.input_ids.device
        return (self.input_ids.shape == input_ids.shape and torch.equal(self.input_ids, input_ids.to(device))
                and torch.equal(self.attention_mask, attention_mask.to(device)))

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.kv) + \
            self.last_logits.numel() * self.last_logits.element_size()

    def cache(self, rows: torch.Tensor | None = None):
        """A new `DynamicCache` holding the states (of `rows`, an index may repeat), for a forward to continue from;
        the states themselves are never changed."""
        from transformers.cache_utils import DynamicCache

        kv = self.kv if rows is None else [(k.index_select(0, rows.to(k.device)), v.index_select(0, rows.to(v.device)))
                                           for k, v in self.kv]
        return DynamicCache(kv)


def continue_prompts(model, states: PromptStates, rows: torch.Tensor, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor, **kwargs):
    """`model`'s forward over tokens that follow the prompts `rows` of `states` (an index may repeat).

    Args:
        input_ids: the tokens after each prompt, right-padded. Shape: (R, L)
        attention_mask: 1 on those tokens, 0 on padding. Shape: (R, L)
        kwargs: more arguments of the forward (`output_hidden_states`, `logits_to_keep`).
    Returns:
        The forward's output, at the L positions only; positions are numbered as `generate` numbers them (the count
        of attended tokens before), so the result is the whole sequence's at those positions.
    """
    device = _device(model)
    full_mask = torch.cat([states.attention_mask[rows.to(states.attention_mask.device)].to(device),
                           attention_mask.to(device)], dim=1)
    position_ids = (full_mask.cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1]:]
    kwargs[cache_argument(model)] = states.cache(rows)
    return model(input_ids=input_ids.to(device), attention_mask=full_mask, position_ids=position_ids, use_cache=True,
                 **kwargs)


def prompt_pass(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_token_id: int) -> PromptStates | None:
    """`model`'s states on these prompts, computed as generation's first step computes them (the same call, so the
    same numbers as the model's own generation on them)."""
    device = _device(model)
    with torch.no_grad():
        generated = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                   max_new_tokens=1, do_sample=False, pad_token_id=pad_token_id, output_logits=True,
                                   return_dict_in_generate=True)
    return PromptStates.from_generation(input_ids.to(device), attention_mask.to(device), generated)


class ReferencePrompts:
    """The reference model, with its prompt states per generation batch kept once computed (its own generation's, or
    a prompt pass), up to `max_bytes` in all: each run's KL then runs the reference over the reply positions alone."""

    def __init__(self, model, pad_token_id: int, max_bytes: int = KEPT_BYTES):
        self.model = model
        self.pad_token_id = pad_token_id
        self.max_bytes = max_bytes
        self.kept: list[PromptStates] = []

    @property
    def kept_bytes(self) -> int:
        return sum(states.nbytes for states in self.kept)

    def find(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> PromptStates | None:
        return next((s for s in self.kept if s.same_prompts(input_ids, attention_mask)), None)

    def keep(self, states: PromptStates | None) -> PromptStates | None:
        """Keeps the reference's states of one batch when they fit in the budget; returns them (kept or not)."""
        if states is None or self.find(states.input_ids, states.attention_mask) is not None:
            return states
        if self.kept_bytes + states.nbytes <= self.max_bytes:
            states = states.kept_copy()
            self.kept.append(states)
        return states

    def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> PromptStates | None:
        """The reference's states on these prompts: kept ones, else a prompt pass (kept when they fit); None where
        the reference's cache gives none."""
        return self.find(input_ids, attention_mask) or self.keep(
            prompt_pass(self.model, input_ids, attention_mask, self.pad_token_id))

    def reply_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sequences: torch.Tensor,
                     mask: torch.Tensor, steps: int) -> torch.Tensor:
        """The reference's logits at each generated position (those that predict the `steps` generated tokens).

        Args:
            input_ids, attention_mask: the batch's left-padded prompts. Shape: (B, P)
            sequences: prompts and generated tokens, `num_return_sequences` rows per prompt. Shape: (B * n, P + steps)
            mask: 1 on prompt and reply tokens, 0 on padding and after the end of turn. Shape: (B * n, P + steps)
        Returns:
            float32 logits. Shape: (B * n, steps, V)
        """
        states = self.states(input_ids, attention_mask)
        if states is None:
            return full_pass_reply_logits(self.model, sequences, mask, steps)
        length = input_ids.shape[1]
        rows = torch.arange(len(input_ids)).repeat_interleave(len(sequences) // len(input_ids))
        first = states.last_logits.index_select(0, rows.to(states.last_logits.device))[:, None]
        if steps == 1:
            return first
        with torch.no_grad():
            rest = continue_prompts(self.model, states, rows, sequences[:, length:length + steps - 1],
                                    mask[:, length:length + steps - 1]).logits
        return torch.cat([first, rest.float()], dim=1)


def full_pass_reply_logits(reference, sequences: torch.Tensor, mask: torch.Tensor, steps: int) -> torch.Tensor:
    """The reference's logits at each generated position, from one forward over prompt and reply (the definition
    `ReferencePrompts.reply_logits` keeps to). Shapes as there: (B, P + steps) -> (B, steps, V), float32."""
    device = _device(reference)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = reference(input_ids=sequences.to(device), attention_mask=mask.to(device),
                           position_ids=position_ids.to(device), logits_to_keep=steps + 1).logits[:, :-1]
    return logits.float()
