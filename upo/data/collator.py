"""Tokenised pairs -> one batch for a single forward pass over every chosen and rejected response.

Three layouts, all giving the same log-probs (tested):

* `separate`: TRL's layout, `2B` rows `prompt + chosen` then `prompt + rejected`, right-padded.
* `shared_prompt` (default): `B` rows `prompt + chosen + rejected`. The prompt is computed once; an attention
  mask keeps the rejected tokens from seeing the chosen ones and position ids restart after the prompt, so
  each response sees exactly the context it would see alone.
* `padding_free`: the shared-prompt rows of the whole batch packed into one row, with no padding at all.

Besides `input_ids`, `attention_mask` (2-D for `separate`, a boolean 4-D mask otherwise) and `position_ids`,
a batch holds the gather indices that let the loss compute the LM head on response tokens only:
`logit_index` (N,) flat index of the hidden state that predicts each response token, `target_ids` (N,),
`response_index` (N,) in `[0, 2B)` (chosen responses first), and `prompt_last_index` (B,) for the value head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from upo.errors import ConfigError

LAYOUTS = ("separate", "shared_prompt", "padding_free")
# What the forward and the loss read from a batch; a `data_collator` of one's own must return at least these.
BATCH_KEYS = ("input_ids", "attention_mask", "position_ids", "logit_index", "target_ids", "response_index",
              "prompt_last_index", "prompt_lengths")
# Per-pair float columns passed through to the loss when the dataset has them.
OPTIONAL_PAIR_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps", "weight", "label")
PROMPT, CHOSEN, REJECTED, PAD = 0, 1, 2, -1


def _round_up(n: int, multiple: int | None) -> int:
    return math.ceil(n / multiple) * multiple if multiple else n


@dataclass
class PreferenceCollator:
    pad_token_id: int
    pad_to_multiple_of: int | None = None
    layout: str = "shared_prompt"

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"Unknown batch layout {self.layout!r}; expected one of {LAYOUTS}.")

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = self._separate(rows) if self.layout == "separate" else self._shared(rows)
        batch["prompt_lengths"] = torch.tensor([len(row["prompt_ids"]) for row in rows])
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

    def _separate(self, rows):
        n = len(rows)
        sequences = ([r["prompt_ids"] + r["chosen_ids"] for r in rows]
                     + [r["prompt_ids"] + r["rejected_ids"] for r in rows])
        length = _round_up(max(map(len, sequences)), self.pad_to_multiple_of)
        input_ids = torch.full((2 * n, length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((2 * n, length), dtype=torch.long)
        gather = _Gather()
        for i, seq in enumerate(sequences):
            input_ids[i, : len(seq)] = torch.tensor(seq)
            attention_mask[i, : len(seq)] = 1
            row = rows[i % n]
            p, side = len(row["prompt_ids"]), "chosen_ids" if i < n else "rejected_ids"
            gather.add(i * length, p - 1, p - 1, row[side], response=i)
            if i < n:
                gather.prompt_last.append(i * length + max(p - 1, 0))
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": torch.arange(length).expand(2 * n, length).clone(),
            **gather.tensors(),
        }

    def _shared(self, rows):
        n = len(rows)
        packed = self.layout == "padding_free"
        lengths = [len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows]
        length = _round_up(sum(lengths) if packed else max(lengths), self.pad_to_multiple_of)
        n_rows = 1 if packed else n
        input_ids = torch.full((n_rows, length), self.pad_token_id, dtype=torch.long)
        position_ids = torch.zeros((n_rows, length), dtype=torch.long)
        part = torch.full((n_rows, length), PAD, dtype=torch.long)
        pair = torch.full((n_rows, length), -1, dtype=torch.long)
        gather = _Gather()
        offset = 0
        for i, row in enumerate(rows):
            r, start = (0, offset) if packed else (i, 0)
            p, c, q = len(row["prompt_ids"]), len(row["chosen_ids"]), len(row["rejected_ids"])
            end = start + p + c + q
            input_ids[r, start:end] = torch.tensor(row["prompt_ids"] + row["chosen_ids"] + row["rejected_ids"])
            position_ids[r, start:end] = torch.cat([torch.arange(p + c), torch.arange(p, p + q)])
            part[r, start:end] = torch.tensor([PROMPT] * p + [CHOSEN] * c + [REJECTED] * q)
            pair[r, start:end] = i
            base = r * length + start
            # The first token of each response is predicted from the last prompt token, the others from their
            # predecessor within the same response.
            gather.add(base, p - 1, p - 1, row["chosen_ids"], response=i)
            gather.add(base, p - 1, p + c - 1, row["rejected_ids"], response=n + i)
            gather.prompt_last.append(base + max(p - 1, 0))
            offset = end
        # Key k is visible to query q when k <= q within the same pair, and k is in the prompt or in q's own part.
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        same_pair = pair[:, :, None] == pair[:, None, :]
        visible = (part[:, None, :] == PROMPT) | (part[:, None, :] == part[:, :, None])
        mask = causal & same_pair & visible & (part[:, None, :] != PAD)
        mask |= torch.eye(length, dtype=torch.bool)  # padding attends to itself, so no row of the softmax is empty
        return {
            "input_ids": input_ids,
            "attention_mask": mask[:, None],
            "position_ids": position_ids,
            **gather.tensors(),
        }


class _Gather:
    """Collects, for every response token, which hidden state predicts it."""

    def __init__(self):
        self.logit_index, self.target_ids, self.response_index, self.prompt_last = [], [], [], []

    def add(self, base: int, first_source: int, previous: int, tokens: list[int], response: int) -> None:
        for k, token in enumerate(tokens):
            source = first_source if k == 0 else previous + k
            if source < 0:  # an empty prompt: the first token has nothing to be predicted from
                continue
            self.logit_index.append(base + source)
            self.target_ids.append(token)
            self.response_index.append(response)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "logit_index": torch.tensor(self.logit_index, dtype=torch.long),
            "target_ids": torch.tensor(self.target_ids, dtype=torch.long),
            "response_index": torch.tensor(self.response_index, dtype=torch.long),
            "prompt_last_index": torch.tensor(self.prompt_last, dtype=torch.long),
        }


@dataclass
class CheckedCollator:
    """A `data_collator` of one's own, each of its batches checked by `check_batch` before anything reads it."""

    collator: object

    def __call__(self, rows: list[dict]) -> dict:
        batch = self.collator(rows)
        check_batch(batch)
        return batch


def check_batch(batch) -> None:
    """Refuses, in one line, a batch from a `data_collator` of one's own that lacks what `BATCH_KEYS` names (TRL's
    `DataCollatorForPreference` builds TRL's layout, `completion_mask` and no gather indices)."""
    missing = [key for key in BATCH_KEYS if key not in batch]
    if missing:
        raise ConfigError(
            f"data_collator returned a batch without {missing} (it has {sorted(batch)[:8]}): UPOTrainer reads batches "
            "in upo's layout. Build them with upo.data.collator.PreferenceCollator (wrap or subclass it), or leave "
            "data_collator unset.")
