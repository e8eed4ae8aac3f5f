"""Tokenised pairs -> one padded batch holding every chosen sequence, then every rejected one."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Per-pair float columns passed through to the loss when the dataset has them.
OPTIONAL_PAIR_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps", "weight")
DESIGNER_COLUMNS = ("designer_reward_chosen", "designer_reward_rejected", "designer_scores_chosen", "designer_scores_rejected")


def _pad(rows: list[list[int]], value: int, multiple: int | None) -> torch.Tensor:
    length = max(len(r) for r in rows)
    if multiple:
        length = math.ceil(length / multiple) * multiple
    return torch.tensor([r + [value] * (length - len(r)) for r in rows], dtype=torch.long)


@dataclass
class PreferenceCollator:
    """Right-pads `prompt + chosen` and `prompt + rejected` sequences into one batch of `2B` rows.

    Returns `input_ids`, `attention_mask`, `completion_mask` of shape (2B, L), `prompt_lengths` (B,), and,
    when present in the rows, `ref_chosen_logps`, `ref_rejected_logps`, `weight` (B,),
    `designer_rewards` (2B,) and `designer_scores` (2B, K).
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        sequences, completion = [], []
        for side in ("chosen_ids", "rejected_ids"):
            for row in rows:
                sequences.append(row["prompt_ids"] + row[side])
                completion.append([0] * len(row["prompt_ids"]) + [1] * len(row[side]))
        batch = {
            "input_ids": _pad(sequences, self.pad_token_id, self.pad_to_multiple_of),
            "attention_mask": _pad([[1] * len(s) for s in sequences], 0, self.pad_to_multiple_of),
            "completion_mask": _pad(completion, 0, self.pad_to_multiple_of),
            "prompt_lengths": torch.tensor([len(row["prompt_ids"]) for row in rows]),
        }
        for column in OPTIONAL_PAIR_COLUMNS:
            if column in rows[0]:
                batch[column] = torch.tensor([row[column] for row in rows], dtype=torch.float32)
        if "designer_reward_chosen" in rows[0]:
            batch["designer_rewards"] = torch.tensor(
                [row["designer_reward_chosen"] for row in rows] + [row["designer_reward_rejected"] for row in rows],
                dtype=torch.float32,
            )
            batch["designer_scores"] = torch.tensor(
                [row["designer_scores_chosen"] for row in rows] + [row["designer_scores_rejected"] for row in rows],
                dtype=torch.float32,
            )
        return batch
