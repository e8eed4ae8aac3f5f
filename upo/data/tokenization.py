"""Validated pairs -> token ids, once, before training.

The split of a pair into prompt and completion tokens follows TRL 1.16's `DPOTrainer` exactly (so our DPO
and TRL's see the same tokens): the EOS token is appended to standard responses, the prompt is tokenised
alone and with each response, and the completion starts where those token sequences diverge.
"""

from __future__ import annotations

from datasets import Dataset

from upo.errors import ConfigError, DataError


def _common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _ids(tokenizer, value, **chat_kwargs) -> list[int]:
    if isinstance(value, list):
        return list(tokenizer.apply_chat_template(value, tokenize=True, return_dict=True, **chat_kwargs)["input_ids"])
    return tokenizer(text=value)["input_ids"]


def tokenize_pair(tokenizer, prompt, chosen, rejected) -> dict[str, list[int]]:
    """Token ids of one pair: `prompt_ids`, `chosen_ids`, `rejected_ids` (no truncation)."""
    if isinstance(prompt, list):  # conversational: the chat template renders the turns
        prompt_ids = _ids(tokenizer, prompt, add_generation_prompt=True)
        chosen_full, rejected_full = _ids(tokenizer, prompt + chosen), _ids(tokenizer, prompt + rejected)
    else:
        eos = tokenizer.eos_token
        chosen = chosen if chosen.endswith(eos) else chosen + eos
        rejected = rejected if rejected.endswith(eos) else rejected + eos
        prompt_ids = _ids(tokenizer, prompt)
        chosen_full, rejected_full = _ids(tokenizer, prompt + chosen), _ids(tokenizer, prompt + rejected)
    # Tokens can merge across the prompt/response boundary: the response starts where the sequences diverge.
    prompt_len = min(_common_prefix_length(prompt_ids, chosen_full), _common_prefix_length(prompt_ids, rejected_full))
    return {
        "prompt_ids": prompt_ids[:prompt_len],
        "chosen_ids": chosen_full[prompt_len:],
        "rejected_ids": rejected_full[prompt_len:],
    }


def _preview(messages: list) -> str:
    roles = "/".join(str(m.get("role")) for m in messages if isinstance(m, dict))
    return f"{roles}: {repr(str(messages[-1].get('content', '')))[:40]}" if messages else "[]"


def check_tokenizer(tokenizer, conversational: bool) -> None:
    if tokenizer.eos_token is None:
        raise ConfigError("The tokenizer has no eos_token: set `tokenizer.eos_token` before training.")
    if conversational and not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "The data is conversational (lists of messages) but the tokenizer has no chat template. "
            "Set `tokenizer.chat_template`, or give the data as plain strings."
        )


def tokenize_dataset(dataset: Dataset, tokenizer, max_length: int | None, truncation_mode: str = "keep_start",
                     report=None, num_proc: int | None = None) -> Dataset:
    """Adds `prompt_ids`, `chosen_ids`, `rejected_ids`; drops pairs whose prompt alone reaches `max_length`.

    Responses are truncated so that prompt + response fits in `max_length` (`keep_start`, TRL's only
    supported mode). `report` (a `DataReport`) receives the counts of dropped and truncated pairs.
    """
    if truncation_mode != "keep_start":
        raise ConfigError(
            f"truncation_mode={truncation_mode!r} is not supported: only 'keep_start' is (TRL deprecated "
            "'keep_end'). Shorten the prompts, or raise max_length."
        )
    check_tokenizer(tokenizer, conversational=isinstance(dataset[0]["prompt"], list) if len(dataset) else False)

    source = getattr(report, "source", "dataset")

    def tokenize(row, index):
        try:
            return tokenize_pair(tokenizer, row["prompt"], row["chosen"], row["rejected"])
        except Exception as error:
            if not isinstance(row["prompt"], list):
                raise  # plain text: nothing of the user's runs here, so an error is a bug and keeps its traceback
            # The model's chat template is the user's input: it may refuse a row (role order, a missing system
            # message) by raising, with a message of its own.
            raise DataError(
                f"{source}, pair {index} (prompt {_preview(row['prompt'])}): the tokenizer's chat template refused it "
                f"({type(error).__name__}: {' '.join(str(error).split())[:200]}). Fix the row's messages (roles "
                "and order the template accepts), or remove the row."
            ) from error

    dataset = dataset.map(tokenize, with_indices=True, num_proc=num_proc, desc="Tokenizing pairs")
    if max_length is not None:
        dataset = _drop_and_truncate(dataset, max_length, report, num_proc)
    # Tokens of prompt + chosen + rejected, for `group_by_length` batches.
    lengths = [len(p) + len(c) + len(r)
               for p, c, r in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"])]
    return dataset.add_column("length", lengths)


def _drop_and_truncate(dataset: Dataset, max_length: int, report, num_proc: int | None) -> Dataset:
    prompt_lengths = [len(ids) for ids in dataset["prompt_ids"]]
    keep = [i for i, n in enumerate(prompt_lengths) if n < max_length]
    if report is not None:
        report.dropped_prompt_too_long += len(dataset) - len(keep)
        report.max_length = max_length
    if len(keep) < len(dataset):
        dataset = dataset.select(keep)

    def truncate(row):
        room = max_length - len(row["prompt_ids"])
        return {"chosen_ids": row["chosen_ids"][:room], "rejected_ids": row["rejected_ids"][:room]}

    lengths = zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"])
    truncated = sum(len(p) + max(len(c), len(r)) > max_length for p, c, r in lengths)
    if report is not None:
        report.truncated += truncated
    if truncated:
        dataset = dataset.map(truncate, num_proc=num_proc, desc="Truncating to max_length")
    return dataset
