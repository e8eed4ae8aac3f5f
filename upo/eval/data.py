"""Evaluation prompts from any prompt or preference dataset, as rows `upo eval` generates on.

A row becomes `{"prompt", "chosen"?, "rejected"?, "reference_answer"?, ...its other columns}`, from any of these
layouts (strings, or lists of `{"role", "content"}` messages):

* **prompts**: a `prompt` column (or `--prompt_column`), nothing else needed;
* **pairs with a prompt**: `prompt`, `chosen`, `rejected` (TRL's preference format; the shipped chit-chat set);
* **pairs with an implicit prompt** (Anthropic HH): `chosen` and `rejected` hold the whole conversation, the prompt
  is their common start (`"\\n\\nHuman: ...\\n\\nAssistant:"`), split as TRL's `extract_prompt` does;
* **UltraFeedback-style**: `chosen` and `rejected` are conversations that repeat the user's turn (a `prompt` string
  column, when present, is that turn): the prompt is their common messages;
* **conversations**: a `messages` column: the prompt is everything before the last assistant message, which is
  the reference answer.

The reference answer (what the `similarity` preference scorer compares a reply with) is `--reference_column`,
else `human_reply` when the data has it; a conversation's last assistant message otherwise; it is optional.
`chosen` / `rejected`, when present, give the held-out implicit-reward accuracy.

Sources: a local `.jsonl` / `.json` / `.csv` / `.parquet` file, a `save_to_disk` folder, a local folder laid out as
a Hub dataset repository (`data/test-00000-of-00001.parquet`, read with `datasets.load_dataset`), or a Hub dataset
by name (`dataset_name`, through `datasets.load_dataset`, so the Hub cache and offline mode work as usual).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upo.data.loading import HubDataset, load_rows
from upo.data.validation import check_message, check_value, is_conversational, split_implicit_prompt, visible_text
from upo.errors import DataError
from upo.rewards.completions import completion_text

DEFAULT_REFERENCE_COLUMNS = ("human_reply",)
LAYOUTS_HELP = ("Expected a 'prompt' column, 'chosen' and 'rejected' (with or without 'prompt'), or a 'messages' "
                "conversation; strings or lists of {'role', 'content'} messages. Name another prompt column with "
                "--prompt_column.")


@dataclass
class EvalData:
    """The evaluation rows, where they came from, and how they were read."""

    rows: list[dict]
    source: str
    layout: str
    reference_column: str | None
    identical_pairs: int = 0  # rows whose chosen equals their rejected: no preference, left out of the accuracy

    def describe(self) -> str:
        reference = f"reference answers from {self.reference_column!r}" if self.reference_column else \
            "no reference answers"
        pairs = sum(1 for r in self.rows if r.get("chosen") is not None)
        identical = (f", {self.identical_pairs} more with chosen identical to rejected, left out of the "
                     "implicit-reward accuracy" if self.identical_pairs else "")
        return (f"{len(self.rows)} evaluation prompts from {self.source} ({self.layout}; {reference}; "
                f"{pairs} with chosen and rejected{identical})")


def load_eval_data(source: str | os.PathLike | None = None, dataset_name: str | None = None,
                   dataset_config: str | None = None, split: str | None = None, max_prompts: int | None = None,
                   prompt_column: str = "prompt", reference_column: str | None = None) -> EvalData:
    """Rows from a file or local folder (`source`) or a Hub dataset (`dataset_name`), normalised (see the module
    docstring); the first `max_prompts` rows only, when given. Bad rows raise `DataError` naming the row."""
    if (source is None) == (dataset_name is None):
        raise DataError("Give the evaluation data as a file or folder (--eval_data) or a dataset name "
                        "(--dataset_name), one of the two.")
    dataset, name, line_numbers = _load_raw(source, dataset_name, dataset_config, split)
    if max_prompts:
        dataset = dataset.select(range(min(max_prompts, len(dataset))))
    if len(dataset) == 0:
        raise DataError(f"{name}: no rows to evaluate on (the file or split is empty).")
    columns = dataset.column_names
    if reference_column is not None and reference_column not in columns:
        raise DataError(f"{name}: no column {reference_column!r} (--reference_column); the columns are {columns}.")
    if reference_column is None:
        reference_column = next((c for c in DEFAULT_REFERENCE_COLUMNS if c in columns), None)
    layout = _layout(columns, prompt_column, dataset[0])
    rows, identical = [], 0
    for index, raw in enumerate(dataset):
        where = f"{name}, row {index}" + (f" (line {line_numbers[index]})" if line_numbers else "")
        row = normalize_eval_row(raw, where, prompt_column, reference_column)
        if row.get("chosen") is not None and row["chosen"] == row.get("rejected"):  # as training drops them
            row["chosen"] = row["rejected"] = None
            identical += 1
        rows.append(row)
    if reference_column is None and layout == "conversations":
        reference_column = "messages (the last assistant message)"
    return EvalData(rows, name, layout, reference_column, identical)


def _load_raw(source, dataset_name, dataset_config, split):
    """The raw rows as a `datasets.Dataset`, the name errors use, and each row's file line when known."""
    if dataset_name is not None:
        return load_rows(HubDataset(dataset_name, dataset_config, _eval_split(dataset_name, dataset_config, split)))
    path = Path(source)
    if path.is_dir() and not any((path / marker).is_file() for marker in ("dataset_dict.json", "state.json")):
        return load_rows(HubDataset(str(path), dataset_config, _eval_split(str(path), dataset_config, split)))
    return load_rows(str(source), split or "train")


def _eval_split(name: str, config: str | None, split: str | None) -> str:
    """`split`, checked against the dataset's splits when they can be listed; default `test`, or the only split."""
    import datasets

    try:
        splits = datasets.get_dataset_split_names(name, config)
    except Exception:  # not listable here (offline, not cached): the loader says why, in one line
        return split or "test"
    if split is None:
        split = "test" if "test" in splits else splits[0] if len(splits) == 1 else None
        if split is None:
            raise DataError(f"{name}: several splits ({splits}) and none is 'test': choose one with --split.")
    if split not in splits:
        raise DataError(f"{name}: no split {split!r}; the splits are {splits}. Choose one with --split.")
    return split


def _layout(columns: list[str], prompt_column: str, first: dict) -> str:
    if "chosen" in columns and "rejected" in columns:
        if prompt_column not in columns:
            return "pairs, implicit prompt"
        if is_conversational(first.get("chosen")) and not is_conversational(first.get(prompt_column)):
            return "pairs, prompt inside the conversations (UltraFeedback-style)"
        return "pairs with a prompt"
    if prompt_column in columns:
        return "prompts"
    if "messages" in columns:
        return "conversations"
    raise DataError(f"No prompts found: the columns are {columns}. {LAYOUTS_HELP}")


def normalize_eval_row(raw: dict, where: str, prompt_column: str = "prompt",
                       reference_column: str | None = None) -> dict:
    """One row as `{"prompt", "chosen"?, "rejected"?, "reference_answer"?, ...other columns}` (module docstring)."""
    row = {k: v for k, v in raw.items() if k not in (prompt_column, "chosen", "rejected")}
    prompt, chosen, rejected = raw.get(prompt_column), raw.get("chosen"), raw.get("rejected")
    if chosen is not None and rejected is not None:
        for column, value in (("chosen", chosen), ("rejected", rejected)):
            check_value(value, f"{where}, column {column!r}")  # as training checks them: text, messages, roles
        if prompt is None or (is_conversational(chosen) and not is_conversational(prompt)):
            if chosen == rejected:  # nothing to split on: the prompt is all but the last turn
                prompt, chosen, rejected = _split_last_turn(chosen, where), None, None
            else:
                prompt, chosen, rejected = split_implicit_prompt(chosen, rejected)
            if not prompt:
                raise DataError(f"{where}: chosen and rejected share no start to use as the prompt. Add a "
                                f"{prompt_column!r} column. {LAYOUTS_HELP}")
        row["chosen"], row["rejected"] = chosen, rejected
    elif prompt is None and is_conversational(raw.get("messages")):
        prompt = _split_last_turn(raw["messages"], where)
        if reference_column is None:
            row["reference_answer"] = completion_text(raw["messages"][len(prompt):])
    if prompt is None:
        raise DataError(f"{where}: no prompt (column {prompt_column!r} is missing or null). {LAYOUTS_HELP}")
    _check_prompt(prompt, where, prompt_column)
    row["prompt"] = prompt
    if reference_column is not None and raw.get(reference_column) is not None:
        answer = completion_text(raw[reference_column]).strip()
        if visible_text(answer):  # an empty answer is no reference answer
            row["reference_answer"] = answer
    return row


def _split_last_turn(messages: list[dict] | str, where: str) -> list[dict] | str:
    """The messages before the last assistant message (a conversation's prompt); of an Anthropic-HH text, the text up
    to its last "Assistant:"."""
    if isinstance(messages, str):
        cut = messages.rfind("\n\nAssistant:")
        if cut <= 0:
            raise DataError(f"{where}: chosen and rejected are the same text and there is no prompt column, so nothing "
                            "tells the prompt from the reply. Add a prompt column, or remove the row.")
        return messages[:cut + len("\n\nAssistant:")]
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None or last == 0:
        raise DataError(f"{where}: the conversation has no assistant reply after a prompt. {LAYOUTS_HELP}")
    return list(messages[:last])


def _check_prompt(prompt: Any, where: str, column: str) -> None:
    """A prompt as training checks one: text, or messages with training's roles and text content; something visible."""
    if isinstance(prompt, str):
        if not visible_text(prompt):
            raise DataError(f"{where}, column {column!r}: the prompt is empty, or only whitespace or invisible "
                            "characters. Fix the row or remove it.")
        return
    if not (isinstance(prompt, list) and prompt):
        raise DataError(f"{where}, column {column!r}: {str(prompt)[:60]!r} is neither text nor a list of "
                        f"{{'role', 'content'}} messages. {LAYOUTS_HELP}")
    for index, message in enumerate(prompt):
        check_message(message, f"{where}, column {column!r}, message {index}")
    if not any(visible_text(message["content"]) for message in prompt):
        raise DataError(f"{where}, column {column!r}: every message is empty, or only whitespace or invisible "
                        "characters. Fix the row or remove it.")


# Anthropic HH's layout: "\n\nHuman: ...\n\nAssistant: ...\n\nHuman: ...\n\nAssistant:".
_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")


def hh_to_messages(text: str) -> list[dict] | None:
    """An Anthropic-HH-style text as chat messages (`Human` -> user, `Assistant` -> assistant; a last empty
    `Assistant:` turn, where the reply goes, dropped); None when the text is not in that layout."""
    if not isinstance(text, str):
        return None
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        return None
    messages = [{"role": "user" if speaker == "Human" else "assistant", "content": content.strip()}
                for speaker, content in zip(parts[1::2], parts[2::2])]
    if messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages if messages and messages[0]["role"] == "user" else None


def rows_as_chat(rows: list[dict]) -> list[dict]:
    """Rows whose prompt is HH-style text with chat messages instead (their chosen / rejected as one assistant
    message each); other rows unchanged. For chat models: they answer the conversation, not continue a text."""
    out = []
    for row in rows:
        messages = hh_to_messages(row["prompt"])
        if messages is None:
            out.append(row)
            continue
        row = {**row, "prompt": messages}
        for column in ("chosen", "rejected"):
            if isinstance(row.get(column), str):
                row[column] = [{"role": "assistant", "content": row[column].strip()}]
        out.append(row)
    return out
