"""Unpaired feedback: one completion per row with a binary label (`prompt`, `completion`, `label`), as TRL's KTO.

Preference pairs are unpaired automatically (chosen -> label True, rejected -> label False). For training, each
row is laid out like a pair so that the rest of the data path, the collator and the forward stay the same: the
first response is the row's completion, the second a completion of *another* prompt, which KTO needs to estimate
its reference point (the policy's KL to the reference, on mismatched pairs).
"""

from __future__ import annotations

import math
import random

from datasets import Dataset

from upo.data.validation import DataReport, _check_value, _value_format, normalize_preference_rows, row_location
from upo.errors import DataError

UNPAIRED_COLUMNS = ("prompt", "completion", "label")
UNPAIRED_HELP = (
    "Unpaired data has columns 'prompt', 'completion' and 'label' (true for a desirable completion, false for an "
    "undesirable one), prompt and completion both strings or both lists of {'role', 'content'} messages; "
    "preference pairs ('prompt', 'chosen', 'rejected') are unpaired automatically."
)


def unpair_preference_dataset(dataset: Dataset) -> Dataset:
    """Each pair becomes two rows, `(prompt, chosen, True)` then `(prompt, rejected, False)`; other columns repeat."""
    extra = [c for c in dataset.column_names if c not in ("prompt", "chosen", "rejected")]
    columns = {"prompt": [], "completion": [], "label": [], **{c: [] for c in extra}}
    for row in dataset:
        for response, label in ((row["chosen"], True), (row["rejected"], False)):
            columns["prompt"].append(row["prompt"])
            columns["completion"].append(response)
            columns["label"].append(label)
            for c in extra:
                columns[c].append(row[c])
    return Dataset.from_dict(columns)


def normalize_unpaired_rows(
    dataset: Dataset, source_name: str = "dataset", line_numbers: list[int] | None = None
) -> tuple[Dataset, DataReport]:
    """Validate `prompt`, `completion`, `label` rows; errors name the source, row, file line, column and fix."""
    if len(dataset) == 0:
        raise DataError(f"{source_name}: no rows to train on (the file or split is empty).")
    missing = [c for c in UNPAIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise DataError(f"{source_name}: missing column(s) {missing}; the columns found are {dataset.column_names}. "
                        f"{UNPAIRED_HELP}")
    prompts, completions, labels = (dataset[c][:] for c in UNPAIRED_COLUMNS)
    data_format = _value_format(completions[0])
    for row in range(len(dataset)):
        where = row_location(source_name, row, line_numbers)
        for column, value in (("prompt", prompts[row]), ("completion", completions[row])):
            _check_value(value, f"{where}, column '{column}'")
            if _value_format(value) != data_format:
                raise DataError(f"{where}, column '{column}': a {_value_format(value)} value, but row 0 of "
                                f"'completion' is {data_format}. {UNPAIRED_HELP}")
        label = labels[row]
        if not isinstance(label, bool):
            raise DataError(f"{where}, column 'label': {label!r} is not true or false. Write true for a desirable "
                            "completion and false for an undesirable one.")
    if len(set(map(repr, prompts))) < 2:
        raise DataError(f"{source_name}: every row has the same prompt. KTO estimates its reference point from "
                        "completions paired with other prompts, so it needs at least two different prompts.")
    report = DataReport(source=source_name, loaded=len(dataset), format=data_format, implicit_prompt=False,
                        unit="unpaired rows")
    extra = [c for c in dataset.column_names if c not in UNPAIRED_COLUMNS]
    return dataset.select_columns([*UNPAIRED_COLUMNS, *extra]), report


def load_unpaired_rows(
    dataset: Dataset, source_name: str, line_numbers: list[int] | None
) -> tuple[Dataset, DataReport]:
    """Unpaired rows from either layout: validated as they are, or validated as pairs and then unpaired."""
    columns = dataset.column_names
    if "completion" in columns or "label" in columns:
        return normalize_unpaired_rows(dataset, source_name, line_numbers)
    if "chosen" in columns and "rejected" in columns:
        pairs, report = normalize_preference_rows(dataset, source_name, line_numbers)
        unpaired = unpair_preference_dataset(pairs)
        report.loaded, report.dropped_identical = len(unpaired), 2 * report.dropped_identical
        report.unit = "unpaired rows"
        return unpaired, report
    raise DataError(f"{source_name}: loss_type 'kto' reads unpaired rows, but the columns found are {columns}. "
                    f"{UNPAIRED_HELP}")


def with_mismatched_completions(dataset: Dataset, seed: int = 0) -> Dataset:
    """`prompt, completion, label` -> `prompt, chosen, rejected, label`, the pair layout the trainer computes.

    `chosen` holds the row's completion; `rejected` a completion of another prompt, the mismatched pair of KTO's
    reference point. The mismatched completions must be a sample of the whole set, desirable and undesirable alike,
    as TRL (a rotation within each shuffled batch) and HALOs (a random draw) take them: the rows are put in a random
    order seeded by `seed`, and each takes the completion of the next row in that order (cyclically) whose prompt
    differs. Done once over the whole set, so that the mismatched pairs' reference log-probs can be precomputed.
    Nothing is learnt from `rejected`: it carries no label and no designer reward.
    """
    prompts, completions = dataset["prompt"][:], dataset["completion"][:]
    keys = [repr(p) for p in prompts]
    n = len(prompts)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    mismatched = [None] * n
    for k, i in enumerate(order):
        # Unpaired pairs put a prompt's two rows side by side; the shuffle spreads them, the scan skips the rest.
        j = next((order[m % n] for m in range(k + 1, k + n) if keys[order[m % n]] != keys[i]), order[(k + 1) % n])
        mismatched[i] = completions[j]
    dataset = dataset.rename_column("completion", "chosen").add_column("rejected", mismatched)
    extra = [c for c in dataset.column_names if c not in ("prompt", "chosen", "rejected")]
    return dataset.select_columns(["prompt", "chosen", "rejected", *extra])


def drop_mismatched_rewards(dataset: Dataset) -> Dataset:
    """The mismatched completion gets no designer reward (NaN): the designer term and its token count skip it."""
    def clear(row):
        row["designer_reward_rejected"] = math.nan
        row["designer_scores_rejected"] = [math.nan] * len(row["designer_scores_rejected"])
        return row

    return dataset.map(clear, desc="KTO: no designer reward on mismatched completions")
