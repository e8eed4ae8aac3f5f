"""Batched, reproducible replies from a causal LM to chat prompts (data building and evaluation).

Prompts are lists of `{"role", "content"}` messages rendered with the tokenizer's chat template. They are
sorted by length and cut into fixed batches (less padding); batch `i` is generated under the seed
`seed + i`, so a given (prompts, model, settings) always gives the same replies, whichever batches were
already done when a run resumed. Replies are decoded without special tokens and stripped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Decoding:
    """How replies are decoded. `do_sample=False` is greedy (temperature and top_k unused)."""

    max_new_tokens: int = 32
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
            out = tokenizer.apply_chat_template(list(prompt), tokenize=True, add_generation_prompt=True, return_dict=True)
            ids.append(list(out["input_ids"]) + prefix)
    return ids


def generation_batches(prompt_ids: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Prompt indices grouped into batches of similar length, in a fixed order."""
    order = sorted(range(len(prompt_ids)), key=lambda i: (len(prompt_ids[i]), i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def generate_replies(
    model,
    tokenizer,
    prompts: Sequence,
    decoding: Decoding = Decoding(),
    seed: int = 0,
    batch_size: int = 32,
    done: dict[int, list[str]] | None = None,
    on_batch: Callable[[int, dict[int, list[str]]], None] | None = None,
    progress: bool = True,
    desc: str = "generating",
) -> list[list[str]]:
    """`decoding.num_return_sequences` replies per prompt, as a list (one entry per prompt) of lists.

    `done` maps batch index -> that batch's replies (flattened as `on_batch` received them) for batches
    finished before (resuming); `on_batch(batch_index, {prompt_index: replies})` is called after each batch.
    """
    from tqdm.auto import tqdm

    prompt_ids = render_prompts(tokenizer, prompts)
    batches = generation_batches(prompt_ids, batch_size)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    n = decoding.num_return_sequences
    replies: list[list[str] | None] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not progress, dynamic_ncols=True)
    try:
        for b, indices in enumerate(batches):
            if done is not None and b in done:
                for i, r in done[b].items():
                    replies[int(i)] = r
                bar.update(len(indices))
                continue
            length = max(len(prompt_ids[i]) for i in indices)
            input_ids = torch.full((len(indices), length), pad, dtype=torch.long)
            attention_mask = torch.zeros((len(indices), length), dtype=torch.long)
            for row, i in enumerate(indices):  # left padding: every prompt ends where generation starts
                input_ids[row, length - len(prompt_ids[i]):] = torch.tensor(prompt_ids[i])
                attention_mask[row, length - len(prompt_ids[i]):] = 1
            device = next(model.parameters()).device
            torch.manual_seed(seed + b)
            kwargs = dict(do_sample=True, temperature=decoding.temperature, top_k=decoding.top_k) if decoding.do_sample \
                else dict(do_sample=False)
            out = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                max_new_tokens=decoding.max_new_tokens, num_return_sequences=n, pad_token_id=pad, **kwargs,
            )
            texts = tokenizer.batch_decode(out[:, length:], skip_special_tokens=True)
            result = {i: [t.strip() for t in texts[row * n : (row + 1) * n]] for row, i in enumerate(indices)}
            for i, r in result.items():
                replies[i] = r
            if on_batch is not None:
                on_batch(b, result)
            bar.update(len(indices))
    finally:
        bar.close()
        model.train(was_training)
    return replies  # type: ignore[return-value]
