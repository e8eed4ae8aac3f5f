"""The held-out pairs' log-probs for the implicit-reward accuracy, from the prompt states generation leaves.

The evaluation generates a reply to every prompt, and a held-out pair's chosen and rejected responses follow that same
prompt: where the pair's prompt tokens (tokenised as training tokenises pairs, `tokenize_dataset`) are the ones the
model generated from, its responses are run on the prompt's states (`upo.eval.prompt_states`), and the prompt is not
run again. Pairs whose prompt tokens differ (a `response_prefix`, a tokenizer whose pair tokenisation starts
otherwise) or whose batch left no states are run whole, as `implicit_reward_accuracy` runs them.

`PairLogps` collects one model's log-probs batch by batch, and records how each pair was computed (its `plan`): the
reference's log-probs are computed by the same plan (`PairLogps.like`), on the same shapes, so that a model equal to
the reference gets a margin of exactly 0 on every pair, as before. The plan's `key` names the pairs' tokens and the
batches, so the reference's log-probs are computed once and reused for every run with the same key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch

from upo.data.collator import PreferenceCollator
from upo.data.tokenization import tokenize_dataset
from upo.eval.prompt_states import PromptStates, continue_prompts
from upo.logps import forward_logps, logit_transform, token_logps

FULL_BATCH_SIZE = 16  # pairs per forward where a pair is run whole (implicit_reward_accuracy's batch size)


@dataclass
class HeldOutPairs:
    """The evaluation rows that have chosen and rejected, tokenised as training tokenises pairs (`max_length`
    applied: pairs whose prompt alone reaches it are dropped, responses truncated)."""

    rows: list[int]  # the evaluation row of each pair
    prompt_ids: list[list[int]]
    chosen_ids: list[list[int]]
    rejected_ids: list[list[int]]

    @classmethod
    def tokenize(cls, tokenizer, rows: list[dict], max_length: int | None) -> HeldOutPairs | None:
        """None when no row has both chosen and rejected; empty when every pair was dropped."""
        from datasets import Dataset

        pairs = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"], "row": k}
                 for k, r in enumerate(rows) if r.get("chosen") is not None and r.get("rejected") is not None]
        if not pairs:
            return None
        dataset = tokenize_dataset(Dataset.from_list(pairs), tokenizer, max_length)
        return cls(list(dataset["row"]), [list(x) for x in dataset["prompt_ids"]],
                   [list(x) for x in dataset["chosen_ids"]], [list(x) for x in dataset["rejected_ids"]])

    def __len__(self) -> int:
        return len(self.rows)

    def token_rows(self, pairs: list[int]) -> list[dict]:
        return [{"prompt_ids": self.prompt_ids[k], "chosen_ids": self.chosen_ids[k],
                 "rejected_ids": self.rejected_ids[k]} for k in pairs]


@dataclass
class PromptBatchPlan:
    """The pairs continued from one generation batch: the batch's prompts and, per pair, its row in the batch."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    positions: list[int]
    pairs: list[int]


class PairLogps:
    """One model's summed log-probs of every held-out pair's chosen and rejected responses (module docstring).

    `add_batch` after each generated batch (with its `PromptStates`), then `finish` for the pairs no batch continued.
    """

    def __init__(self, model, pairs: HeldOutPairs, pad_token_id: int):
        self.model, self.pairs, self.pad_token_id = model, pairs, pad_token_id
        self.chosen = [0.0] * len(pairs)
        self.rejected = [0.0] * len(pairs)
        self.batches: list[PromptBatchPlan] = []
        self.whole: list[int] = []
        self._by_row = {row: k for k, row in enumerate(pairs.rows)}
        self._done: set[int] = set()

    def add_batch(self, indices: list[int], states: PromptStates | None) -> None:
        """The pairs of the evaluation rows `indices` (the batch's rows, in order), continued on the batch's states
        where their prompt tokens are the ones generated from."""
        if states is None:
            return
        positions, pairs = [], []
        for position, row in enumerate(indices):
            k = self._by_row.get(row)
            if k is None:
                continue
            prompt = states.input_ids[position][states.attention_mask[position].bool()].tolist()
            if prompt == self.pairs.prompt_ids[k]:
                positions.append(position)
                pairs.append(k)
        if not pairs:
            return
        plan = PromptBatchPlan(states.input_ids, states.attention_mask, positions, pairs)
        self._store(plan, continued_logps(self.model, states, plan, self.pairs, self.pad_token_id))
        self.batches.append(plan)

    def finish(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs the pairs no batch continued whole; returns every pair's (chosen, rejected) log-probs, float32."""
        self.whole = [k for k in range(len(self.pairs)) if k not in self._done]
        self._store_whole()
        return self.logps()

    def logps(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(self.chosen, dtype=torch.float32), torch.tensor(self.rejected, dtype=torch.float32)

    def like(self, model, states_of) -> tuple[torch.Tensor, torch.Tensor]:
        """Another model's log-probs by this one's plan: the same batches continued on `states_of(input_ids,
        attention_mask)` (that model's `PromptStates` on those prompts, or None: then run whole), the same pairs
        run whole, each in the same groups."""
        other = PairLogps(model, self.pairs, self.pad_token_id)
        for plan in self.batches:
            states = states_of(plan.input_ids, plan.attention_mask)
            if states is None:
                other._store_whole(plan.pairs)
            else:
                other._store(plan, continued_logps(model, states, plan, self.pairs, self.pad_token_id))
        other._store_whole(self.whole)
        return other.logps()

    @property
    def key(self) -> str:
        """sha256 of the pairs' tokens and the plan: equal keys, equal computations."""
        digest = hashlib.sha256()
        digest.update(json.dumps([self.pairs.prompt_ids, self.pairs.chosen_ids, self.pairs.rejected_ids,
                                  self.whole]).encode())
        for plan in self.batches:
            digest.update(json.dumps([plan.input_ids.tolist(), plan.attention_mask.tolist(), plan.positions,
                                      plan.pairs]).encode())
        return digest.hexdigest()

    def _store(self, plan: PromptBatchPlan, logps: tuple[torch.Tensor, torch.Tensor]) -> None:
        for k, c, r in zip(plan.pairs, logps[0].tolist(), logps[1].tolist()):
            self.chosen[k], self.rejected[k] = c, r
            self._done.add(k)

    def _store_whole(self, pairs: list[int] | None = None) -> None:
        pairs = self.whole if pairs is None else pairs
        collator = PreferenceCollator(self.pad_token_id)
        device = next(self.model.parameters()).device
        for start in range(0, len(pairs), FULL_BATCH_SIZE):
            part = pairs[start:start + FULL_BATCH_SIZE]
            batch = collator(self.pairs.token_rows(part))
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            with torch.no_grad():
                chosen, rejected = forward_logps(self.model, batch).logps.float().cpu().chunk(2)
            for k, c, r in zip(part, chosen.tolist(), rejected.tolist()):
                self.chosen[k], self.rejected[k] = c, r
                self._done.add(k)


@torch.no_grad()
def continued_logps(model, states: PromptStates, plan: PromptBatchPlan, pairs: HeldOutPairs,
                    pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of the chosen and rejected responses of `plan.pairs`, each continued from its prompt's states.

    A response's first token is predicted by the prompt's last logits (`states.last_logits`); its other tokens by a
    forward over the response but its last token, on the prompt's states. Chosen rows then rejected rows, right-padded.
    Returns (chosen, rejected), float32. Shape: (K,) each
    """
    responses = [pairs.chosen_ids[k] for k in plan.pairs] + [pairs.rejected_ids[k] for k in plan.pairs]
    n = len(responses)
    rows = torch.tensor(plan.positions + plan.positions)
    device = next(model.parameters()).device
    first_logits = states.last_logits.index_select(0, rows.to(states.last_logits.device)).float()
    first_tokens = torch.tensor([r[0] if r else 0 for r in responses], device=first_logits.device)
    first = first_logits.gather(-1, first_tokens[:, None]).squeeze(-1) - torch.logsumexp(first_logits, dim=-1)
    first = first.to(device) * torch.tensor([1.0 if r else 0.0 for r in responses], device=device)
    length = max(len(r) - 1 for r in responses)
    if length <= 0:
        return first.cpu().chunk(2)
    input_ids = torch.full((n, length), pad_token_id, dtype=torch.long)
    mask = torch.zeros((n, length), dtype=torch.long)
    logit_index, targets, response_index = [], [], []
    for j, response in enumerate(responses):
        inputs = response[:-1]
        input_ids[j, :len(inputs)] = torch.tensor(inputs, dtype=torch.long)
        mask[j, :len(inputs)] = 1
        for t in range(len(inputs)):  # the state at token t predicts token t + 1
            logit_index.append(j * length + t)
            targets.append(response[t + 1])
            response_index.append(j)
    outputs = continue_prompts(model, states, rows, input_ids, mask, output_hidden_states=True, logits_to_keep=1)
    hidden = outputs.hidden_states[-1]
    flat = hidden.reshape(-1, hidden.shape[-1])
    per_token, _ = token_logps(flat[torch.tensor(logit_index, device=flat.device)],
                               torch.tensor(targets, device=device), model.get_output_embeddings(), None,
                               logit_transform(model.config))
    per_token = per_token.float()
    # Each response's tokens summed in order, its first one first (as `forward_logps` sums them).
    values = torch.cat([first, per_token])
    index = torch.cat([torch.arange(n, device=device), torch.tensor(response_index, device=device)])
    logps = values.new_zeros(n).index_add(0, index, values)
    return logps.cpu().chunk(2)
