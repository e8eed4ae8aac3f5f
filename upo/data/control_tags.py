"""Conditional SFT's control tags: a tag opens every response, `[good]` for chosen and `[bad]` for rejected.

The tag is written at the start of the response (not into the prompt), so chosen and rejected still share their
prompt and its computation. At generation the response is started with the good tag (`upo.eval.evaluate`).
"""

from __future__ import annotations

from datasets import Dataset


def tagged(response, tag: str):
    """`tag + ' ' + response`, for a string or for a list of messages (the tag opens the first message)."""
    if isinstance(response, str):
        return f"{tag} {response}"
    first = dict(response[0])
    first["content"] = f"{tag} {first['content']}"
    return [first, *response[1:]]


def add_control_tags(dataset: Dataset, tags: tuple[str, str] | list[str]) -> Dataset:
    """Chosen responses start with `tags[0]`, rejected ones with `tags[1]`. Designer rewards, scored before this,
    see the responses without tags."""
    good, bad = tags

    def tag(row):
        return {"chosen": tagged(row["chosen"], good), "rejected": tagged(row["rejected"], bad)}

    return dataset.map(tag, desc="CSFT: control tags")
