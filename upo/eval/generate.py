"""Batched, reproducible replies from a causal LM to chat prompts (data building and evaluation).

Prompts are lists of `{"role", "content"}` messages rendered with the tokenizer's chat template. They are
sorted by length and cut into fixed batches (less padding); batch `i` is generated under the seed
`seed + i`, so a given (prompts, model, settings) always gives the same replies, whichever batches were
already done when a run resumed. Replies are decoded without special tokens and stripped. Generation runs on
the model's device and in its dtype; `generate(..., reference=...)` also measures the exact KL to a reference
model along each reply, and `generate(..., on_prompts=...)` hands each batch's prompt states to the caller
(`upo.eval.prompt_states`: the implicit accuracy continues from them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from upo.eval.phases import KL, Phases
from upo.eval.prompt_states import PromptStates, ReferencePrompts, full_pass_reply_logits


@dataclass(frozen=True)
class Decoding:
    """How replies are decoded. `do_sample=False` is greedy (temperature and top_k unused). `max_new_tokens` has no
    default here: each caller's own option gives it (`upo eval`'s, upo.eval.settings; the data builder's)."""

    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    num_return_sequences: int = 1

    def describe(self) -> str:
        if not self.do_sample:
            return f"greedy, at most {self.max_new_tokens} new tokens"
        top_k = f", top_k {self.top_k}" if self.top_k else ""
        return (f"sampling at temperature {self.temperature}{top_k}, at most {self.max_new_tokens} new tokens, "
                f"{self.num_return_sequences} per prompt")


def render_prompts(tokenizer, prompts: Sequence, response_prefix: str | None = None) -> list[list[int]]:
    """Token ids of each prompt: chat messages through the chat template (with the generation prompt), or text.

    `response_prefix` (e.g. conditional SFT's good tag) is appended: the reply is generated after it.
    """
    prefix = tokenizer(response_prefix, add_special_tokens=False)["input_ids"] if response_prefix else []
    ids = []
    for prompt in prompts:
        if isinstance(prompt, str):
            ids.append(tokenizer(prompt, add_special_tokens=False)["input_ids"] + prefix)
        else:
            out = tokenizer.apply_chat_template(list(prompt), tokenize=True, add_generation_prompt=True,
                                                return_dict=True)
            ids.append(list(out["input_ids"]) + prefix)
    return ids


def generation_batches(prompt_ids: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Prompt indices grouped into batches of similar length, in a fixed order."""
    order = sorted(range(len(prompt_ids)), key=lambda i: (len(prompt_ids[i]), i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@dataclass
class Generations:
    """What `generate` returns, one entry per prompt: its replies (`num_return_sequences` of them), and for each
    reply its exact KL to the reference along it and its length in tokens (end-of-turn token excluded)."""

    replies: list[list[str]]
    kls: list[list[float]]
    token_counts: list[list[int]]


def end_of_turn_ids(model, tokenizer) -> set[int]:
    """Token ids that end a reply: the tokenizer's eos and the model's generation eos (one id or several)."""
    ids = {tokenizer.eos_token_id}
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids |= set(eos) if isinstance(eos, (list, tuple)) else {eos}
    return {i for i in ids if i is not None}


def model_device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence,
    decoding: Decoding,
    *,
    seed: int,
    batch_size: int,
    reference=None,
    response_prefix: str | None = None,
    done: dict[int, dict[int, list[str]]] | None = None,
    on_batch: Callable[[int, dict[int, list[str]]], None] | None = None,
    on_prompts: Callable[[list[int], PromptStates | None], None] | None = None,
    phases: Phases | None = None,
    progress: bool = True,
    desc: str = "generating",
) -> Generations:
    """Replies of `model` to `prompts` (see the module docstring), on the model's device. `seed` and `batch_size`
    have no default here: each caller's own options give them (`upo eval`'s, upo.eval.settings; the data builder's).

    `reference`: a second causal LM sharing the tokenizer, or a `ReferencePrompts` holding one (its prompt states
    kept: it then runs over the reply positions only); each reply then gets its exact KL to it,
    `sum_t KL(pi(.|x, y<t) || pi_ref(.|x, y<t))` over the whole vocabulary, summed over the reply's tokens up to
    and including its end-of-turn token (the reference runs on its own device). Without it every KL is 0. The
    policy's side is the logits generation produced; `phases` (a `upo.eval.phases.Phases`) counts the KL's time.
    `on_prompts(indices, states)`: called after each generated batch with its prompt indices and the model's
    `PromptStates` on them (None where its cache gives none).
    `response_prefix` (e.g. conditional SFT's good tag) starts every reply; it is not part of the returned text.
    `done` maps batch index -> that batch's replies as `on_batch(batch_index, {prompt_index: replies})` received
    them, for batches finished before (resuming); their KLs and token counts are not known (0).
    """
    from tqdm.auto import tqdm

    prompt_ids = render_prompts(tokenizer, prompts, response_prefix)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    n = decoding.num_return_sequences
    device = model_device(model)
    eos = torch.tensor(sorted(end_of_turn_ids(model, tokenizer)), device=device)
    out = Generations([[] for _ in prompts], [[0.0] * n for _ in prompts], [[0] * n for _ in prompts])
    measure = phases.measure if phases is not None else (lambda name: contextlib.nullcontext())
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not progress, dynamic_ncols=True)
    try:
        for b, indices in enumerate(generation_batches(prompt_ids, batch_size)):
            if done is not None and b in done:
                for i, replies in done[b].items():
                    out.replies[int(i)] = replies
                bar.update(len(indices))
                continue
            length = max(len(prompt_ids[i]) for i in indices)
            input_ids = torch.full((len(indices), length), pad, dtype=torch.long)
            attention_mask = torch.zeros((len(indices), length), dtype=torch.long)
            for row, i in enumerate(indices):  # left padding: every prompt ends where generation starts
                input_ids[row, length - len(prompt_ids[i]):] = torch.tensor(prompt_ids[i])
                attention_mask[row, length - len(prompt_ids[i]):] = 1
            input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
            torch.manual_seed(seed + b)
            sampling = dict(do_sample=True, temperature=decoding.temperature, top_k=decoding.top_k) \
                if decoding.do_sample else dict(do_sample=False)
            generated = model.generate(
                input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=decoding.max_new_tokens,
                num_return_sequences=n, pad_token_id=pad, output_logits=reference is not None or on_prompts is not None,
                return_dict_in_generate=True, **sampling,
            )
            new_tokens = generated.sequences[:, length:]
            is_eos = torch.isin(new_tokens, eos)
            # A token belongs to the reply while no end-of-turn token came before it (that token itself does).
            in_reply = (is_eos.long().cumsum(-1) - is_eos.long()) == 0
            texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            counts = (in_reply & ~is_eos).sum(-1).tolist()
            kls = [0.0] * len(texts)
            if reference is not None:
                with measure(KL):
                    mask = torch.cat([attention_mask.repeat_interleave(n, dim=0), in_reply.long()], dim=1)
                    policy_logits = torch.stack(generated.logits, dim=1)
                    steps = policy_logits.shape[1]
                    if isinstance(reference, ReferencePrompts):
                        ref_logits = reference.reply_logits(input_ids, attention_mask, generated.sequences, mask, steps)
                    else:
                        ref_logits = full_pass_reply_logits(reference, generated.sequences, mask, steps)
                    kls = kl_along_reply(policy_logits, ref_logits, in_reply).tolist()
                    del policy_logits, ref_logits
            if on_prompts is not None:
                on_prompts(indices, PromptStates.from_generation(input_ids, attention_mask, generated, n))
            del generated
            result = {}
            for row, i in enumerate(indices):
                rows = range(row * n, (row + 1) * n)
                result[i] = [texts[k].strip() for k in rows]
                out.replies[i] = result[i]
                out.kls[i] = [float(kls[k]) for k in rows]
                out.token_counts[i] = [int(counts[k]) for k in rows]
            if on_batch is not None:
                on_batch(b, result)
            bar.update(len(indices))
    finally:
        bar.close()
        model.train(was_training)
    return out


def kl_along_reply(policy_logits: torch.Tensor, ref_logits: torch.Tensor, in_reply: torch.Tensor) -> torch.Tensor:
    """Exact KL of the policy to the reference, summed along each generated reply.

    Args:
        policy_logits: the policy's logits at each generated position. Shape: (B, T, V)
        ref_logits: the reference's logits at the same positions (any device). Shape: (B, T, V)
        in_reply: which generated positions belong to the reply. Shape: (B, T)
    Returns:
        `sum_t in_reply_t * KL(pi(.|x, y<t) || pi_ref(.|x, y<t))`, on the policy's device. Shape: (B,)
    """
    policy_logp = policy_logits.float().log_softmax(-1)
    ref_logp = ref_logits.float().log_softmax(-1).to(policy_logp.device)
    per_token = (policy_logp.exp() * (policy_logp - ref_logp)).sum(-1)
    return (per_token * in_reply.to(per_token.device, per_token.dtype)).sum(-1)


def reply_kl(policy_logits: torch.Tensor, reference, sequences: torch.Tensor, attention_mask: torch.Tensor,
             in_reply: torch.Tensor) -> torch.Tensor:
    """`kl_along_reply` with the reference's logits from one forward over prompt and reply.

    Args:
        policy_logits: the policy's logits at each generated position. Shape: (B, T, V)
        reference: the reference causal LM (any device).
        sequences: prompt (left-padded) and generated tokens. Shape: (B, P + T)
        attention_mask: 1 on prompt and reply tokens, 0 on padding and after the end of turn. Shape: (B, P + T)
        in_reply: which generated positions belong to the reply. Shape: (B, T)
    Returns:
        Shape: (B,)
    """
    ref_logits = full_pass_reply_logits(reference, sequences, attention_mask, policy_logits.shape[1])
    return kl_along_reply(policy_logits, ref_logits, in_reply)


def generate_replies(model, tokenizer, prompts: Sequence, decoding: Decoding, *, seed: int, batch_size: int,
                     done: dict[int, dict[int, list[str]]] | None = None,
                     on_batch: Callable[[int, dict[int, list[str]]], None] | None = None, progress: bool = True,
                     desc: str = "generating") -> list[list[str]]:
    """`decoding.num_return_sequences` replies per prompt, as a list (one entry per prompt) of lists (`generate`'s
    replies alone)."""
    return generate(model, tokenizer, prompts, decoding, seed=seed, batch_size=batch_size, done=done,
                    on_batch=on_batch, progress=progress, desc=desc).replies
