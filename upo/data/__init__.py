"""The data path: raw rows -> validated, normalised pairs -> tokenised pairs -> batches."""

from upo.data.loading import ACCEPTED_SOURCES, HubDataset, load_preference_dataset, load_preference_pairs
from upo.data.validation import (
    MESSAGE_ROLES,
    DataReport,
    is_conversational,
    normalize_preference_rows,
    split_implicit_prompt,
)

__all__ = [
    "ACCEPTED_SOURCES",
    "MESSAGE_ROLES",
    "DataReport",
    "HubDataset",
    "is_conversational",
    "load_preference_dataset",
    "load_preference_pairs",
    "normalize_preference_rows",
    "split_implicit_prompt",
]
