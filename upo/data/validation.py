"""Raw preference rows -> validated, normalised pairs (`prompt`, `chosen`, `rejected`) and a report.

Formats (as in TRL): "standard" values are strings, "conversational" values are lists of
`{"role", "content"}` messages. Without a `prompt` column the prompt is implicit: the common start of
chosen and rejected, split exactly as TRL 1.16's `trl.data_utils.extract_prompt` splits it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from datasets import Dataset, Features, concatenate_datasets

from upo.errors import DataError

MESSAGE_ROLES = ("system", "user", "assistant", "tool")
PAIR_COLUMNS = ("prompt", "chosen", "rejected")

FORMATS_HELP = (
    "Expected columns 'chosen' and 'rejected', and optionally 'prompt', each holding either strings "
    "(standard format) or lists of {'role': ..., 'content': ...} messages (conversational format). "
    "Without a 'prompt' column, the prompt is the common start of chosen and rejected "
    "(Anthropic HH style: '\\n\\nHuman: ...\\n\\nAssistant:')."
)


@dataclass
class DataReport:
    """What happened to the rows of one source on their way to training pairs.

    Later stages add their own counts: tokenisation sets `dropped_prompt_too_long`, `truncated` and
    `max_length`; `kept` follows from the counts, so nobody has to keep it in step.
    """

    source: str
    loaded: int
    format: str  # "standard" or "conversational"
    implicit_prompt: bool
    dropped_identical: int = 0
    dropped_prompt_too_long: int = 0
    truncated: int = 0
    max_length: int | None = None
    unit: str = "pairs"  # "unpaired rows" for KTO's data

    @property
    def kept(self) -> int:
        return self.loaded - self.dropped_identical - self.dropped_prompt_too_long

    def summary(self) -> str:
        """One line for the log, e.g. "Loaded 120 standard pairs from data.jsonl: kept 117, dropped 2 ..."."""
        limit = "max_length" if self.max_length is None else f"max_length={self.max_length}"
        prompt = " (implicit prompt)" if self.implicit_prompt else ""
        line = f"Loaded {self.loaded} {self.format} {self.unit}{prompt} from {self.source}: kept {self.kept}"
        dropped = []
        if self.dropped_identical:
            dropped.append(f"{self.dropped_identical} (chosen identical to rejected)")
        if self.dropped_prompt_too_long:
            dropped.append(f"{self.dropped_prompt_too_long} (prompt alone reaches {limit})")
        if dropped:
            line += ", dropped " + ", ".join(dropped)
        if self.truncated:
            line += f"; truncated {self.truncated} to {limit}"
        return line


def is_conversational(value: Any) -> bool:
    """True if `value` is a list of messages (dicts with a "role"), as TRL's `is_conversational` decides."""
    return isinstance(value, list) and len(value) > 0 and isinstance(value[0], dict) and "role" in value[0]


def split_implicit_prompt(chosen: str | list, rejected: str | list) -> tuple[Any, Any, Any]:
    """Split two full texts (or message lists) into (prompt, chosen, rejected) like TRL's `extract_prompt`.

    The prompt ends where the two first differ, one character earlier when the character before is a
    space, so that "...Assistant: Yes" / "...Assistant: No" give the prompt "...Assistant:" and the
    responses " Yes" / " No". When one is a prefix of the other, TRL keeps the last shared element in the
    responses, and so do we. Where TRL would index from the end (the first elements already differ) we
    return an empty prompt instead, which the caller reports.
    """
    shortest = min(len(chosen), len(rejected))
    common = _common_prefix_length(chosen, rejected)
    if common == shortest:
        cut = max(shortest - 1, 0)
    else:
        cut = common - 1 if common > 0 and chosen[common - 1] == " " else common
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _common_prefix_length(a: str | list, b: str | list) -> int:
    # Binary search on slice equality: the comparisons run in C, where a per-character Python loop over
    # long HH conversations would dominate loading time on 100k-row datasets.
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def normalize_preference_rows(
    dataset: Dataset, source_name: str = "dataset", line_numbers: list[int] | None = None
) -> tuple[Dataset, DataReport]:
    """Validate preference rows and return them as `prompt`, `chosen`, `rejected` pairs, plus a report.

    Every other column (`weight`, `ref_chosen_logps`, precomputed `reward_*` scores, columns that reward
    functions read) is kept untouched. Rows whose chosen equals their rejected carry no preference: they
    are dropped and counted in the report. Everything else that is wrong raises `DataError` naming the
    source, the 0-based row (and the file line when `line_numbers` gives it), the column and the fix;
    this includes empty or whitespace-only values, which are errors rather than silently dropped rows,
    because they usually mean a broken export that the user should fix.
    """
    if len(dataset) == 0:
        raise DataError(f"{source_name}: no rows to train on (the file or split is empty).")
    columns = dataset.column_names
    missing = [name for name in ("chosen", "rejected") if name not in columns]
    if missing:
        raise DataError(
            f"{source_name}: missing column(s) {missing}; the columns found are {columns}. {FORMATS_HELP} "
            "Rename columns with Dataset.rename_column (or in the file) to match."
        )
    implicit_prompt = "prompt" not in columns
    names = PAIR_COLUMNS[1:] if implicit_prompt else PAIR_COLUMNS
    values = {name: dataset[name][:] for name in names}
    data_format = check_pair_values(values, source_name, line_numbers)

    kept_rows, pairs = [], {name: [] for name in PAIR_COLUMNS}
    for row, (chosen, rejected) in enumerate(zip(values["chosen"], values["rejected"])):
        if chosen == rejected:
            continue
        kept_rows.append(row)
        if implicit_prompt:
            _append_implicit_split(pairs, chosen, rejected, row_location(source_name, row, line_numbers))

    if not kept_rows:
        raise DataError(f"{source_name}: in every row chosen is identical to rejected; no preference to learn.")
    report = DataReport(
        source=source_name,
        loaded=len(dataset),
        format=data_format,
        implicit_prompt=implicit_prompt,
        dropped_identical=len(dataset) - len(kept_rows),
    )
    if report.dropped_identical:
        dataset = dataset.select(kept_rows)
    if implicit_prompt:
        value_feature = dataset.features["chosen"]
        split_pairs = Dataset.from_dict(pairs, features=Features({name: value_feature for name in PAIR_COLUMNS}))
        others = dataset.remove_columns(["chosen", "rejected"])
        dataset = concatenate_datasets([split_pairs, others], axis=1) if others.column_names else split_pairs
    extra_columns = [name for name in dataset.column_names if name not in PAIR_COLUMNS]
    return dataset.select_columns([*PAIR_COLUMNS, *extra_columns]), report


def _append_implicit_split(pairs: dict[str, list], chosen: Any, rejected: Any, where: str) -> None:
    prompt, chosen_response, rejected_response = split_implicit_prompt(chosen, rejected)
    if not prompt:
        raise DataError(
            f"{where}: chosen and rejected differ from their first {_unit(chosen)}, so there is no shared "
            "start to use as the prompt. Add a 'prompt' column, or include the prompt at the start of both."
        )
    for column, response in (("chosen", chosen_response), ("rejected", rejected_response)):
        if not _has_text(response):
            raise DataError(
                f"{where}, column '{column}': the response is empty, or only whitespace or invisible characters, once "
                "the prompt shared with the other response is removed. Fix the row or remove it."
            )
    pairs["prompt"].append(prompt)
    pairs["chosen"].append(chosen_response)
    pairs["rejected"].append(rejected_response)


def check_pair_values(
    values: dict[str, list], source_name: str, line_numbers: list[int] | None = None
) -> str:
    """Check every value of the `prompt`/`chosen`/`rejected` columns given; return the data format.

    `values` maps column name to the list of that column's values (rows in order); the format is decided
    by row 0 of `chosen`, and every value of every row must use it.
    """
    data_format = _value_format(values["chosen"][0])
    for row in range(len(values["chosen"])):
        for column, column_values in values.items():
            where = f"{row_location(source_name, row, line_numbers)}, column '{column}'"
            value = column_values[row]
            _check_value(value, where)
            if _value_format(value) != data_format:
                raise DataError(
                    f"{where}: a {_value_format(value)} value, but row 0 of 'chosen' is {data_format}. Every "
                    "prompt, chosen and rejected value must use one format: all strings, or all message lists. "
                    "If the prompt is also written at the start of chosen and rejected, remove the 'prompt' "
                    "column and it will be taken from there."
                )
    return data_format


def _check_value(value: Any, where: str) -> None:
    if value is None:
        raise DataError(
            f"{where}: the value is missing (null, absent, or an empty CSV cell). Fill it in or remove the row."
        )
    if isinstance(value, list):
        if not value:
            raise DataError(f"{where}: an empty message list. Fill it in or remove the row.")
        for index, message in enumerate(value):
            _check_message(message, f"{where}, message {index}")
    elif not isinstance(value, str):
        raise DataError(
            f"{where}: {_described(value)}, expected a string or a list of "
            f"{{'role', 'content'}} messages. {FORMATS_HELP}"
        )
    if not _has_text(value):
        raise DataError(
            f"{where}: empty, or only whitespace or invisible characters ({_invisible_preview(value)}). Empty values "
            "are errors, not dropped rows, because they usually mean a broken export: fix the row or remove it."
        )


# Other chat dialects' names for the roles and keys (ShareGPT's `from` / `value`, `human` / `gpt`; `bot`; `model`).
DIALECT_ROLES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant", "ai": "assistant",
                 "chatgpt": "assistant", "system_prompt": "system", "function": "tool", "observation": "tool"}


def check_message(message: Any, where: str) -> None:
    """One `{"role", "content"}` message: a dict, a role of `MESSAGE_ROLES`, text content. Another dialect's keys or
    roles (ShareGPT's `{"from": "human", "value": ...}`) are named with their equivalents."""
    if not isinstance(message, dict):
        raise DataError(f"{where}: {_described(message)}, expected a dict with 'role' and 'content'.")
    if message.get("role") is None and message.get("from") is not None and "value" in message:  # (Arrow may add
        # the other dialect's keys, as None, to every message of the column)
        raise DataError(f"{where}: a ShareGPT-style message ('from', 'value'); upo reads {{'role', 'content'}} "
                        "messages, as TRL does: convert them (from -> role with human -> user, gpt -> assistant; "
                        "value -> content).")
    role = message.get("role")
    if role not in MESSAGE_ROLES:
        equivalent = DIALECT_ROLES.get(str(role).lower()) if isinstance(role, str) else None
        hint = f" (another dialect's name: use {equivalent!r})" if equivalent else ""
        raise DataError(f"{where}: role {role!r} is not one of {list(MESSAGE_ROLES)}{hint}.")
    content = message.get("content")
    if content is None:
        raise DataError(f"{where}: no 'content' (absent or null). Every message needs its text in 'content'.")
    if not isinstance(content, str):
        raise DataError(f"{where}: 'content' is {_described(content)}, expected a string.")


_check_message = check_message  # the name it had


def check_value(value: Any, where: str) -> None:
    """One prompt, chosen or rejected value: text or a list of messages, with something visible in it."""
    _check_value(value, where)


def _value_format(value: str | list) -> str:
    return "conversational" if isinstance(value, list) else "standard"


# Characters with no glyph that str.strip() keeps: format characters (zero-width space and joiners, word joiner,
# byte-order mark, soft hyphen), controls, unassigned code points, lone marks; and letters drawn blank.
_INVISIBLE_CATEGORIES = ("Zs", "Zl", "Zp", "Cc", "Cf", "Cn", "Cs", "Mn", "Me")
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def visible_text(text: str) -> bool:
    """True when `text` holds a character a reader can see (not only spaces, zero-width or control characters)."""
    if text.isascii():
        return bool(text.strip())
    return any(c not in _BLANK_LETTERS and unicodedata.category(c) not in _INVISIBLE_CATEGORIES for c in text)


def _has_text(value: str | list) -> bool:
    if isinstance(value, str):
        return visible_text(value)
    return any(visible_text(message["content"]) for message in value)


def _invisible_preview(value: str | list) -> str:
    text = value if isinstance(value, str) else "".join(m["content"] for m in value)
    shown = text.encode("ascii", "backslashreplace").decode()
    return f"'{shown[:40]}{'...' if len(shown) > 40 else ''}'"


def _unit(value: str | list) -> str:
    return "message" if isinstance(value, list) else "character"


def _described(value: Any) -> str:
    """E.g. "an int (3)": the type and a short preview of a bad value."""
    kind = type(value).__name__
    text = repr(value)
    preview = text if len(text) <= 60 else text[:57] + "..."
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} ({preview})"


def row_location(source_name: str, row: int, line_numbers: list[int] | None) -> str:
    """How errors name a row: "data.jsonl, row 5 (line 7)"; rows count from 0, file lines from 1."""
    line = f" (line {line_numbers[row]})" if line_numbers is not None else ""
    return f"{source_name}, row {row}{line}"
