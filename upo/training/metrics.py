"""What `UPOTrainer` logs, gathered over the processes batch by batch and averaged at each log.

* TRL 1.16's DPOTrainer metrics: `rewards/chosen|rejected|margins|accuracies`, `logps/chosen|rejected`, `entropy`,
  `logits/chosen|rejected`, `mean_token_accuracy`, `num_tokens`; for unpaired rows (KTO) TRL's KTOTrainer's names:
  `rewards/chosen|rejected` and `logps/chosen|rejected` over the desirable and the undesirable completions,
  `rewards/margins` between them, `kl`, and no accuracies.
* The objective's (`upo.objective.ObjectiveOutput.metrics`): `loss/pref` (the preference term alone: what TRL logs
  as `loss`), `loss/aux`, `loss/value`, `aux/*`, ...; the logged `loss` is the Trainer's, the whole objective.
* upo's: `rewards/{name}/mean|std` of each designer objective, `{name}/explained_variance` over each window,
  `perf/tokens_per_second`.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch

from upo import methods
from upo.logps import ForwardOutput, token_statistics
from upo.losses import explained_variance


def implicit_rewards(out: ForwardOutput, ref_logps: torch.Tensor | None, args) -> tuple[torch.Tensor, torch.Tensor]:
    """`(logps, beta * (logps - ref_logps))` of every response as logged, detached. Shapes: (2B,), (2B,)

    For a length-normalised method (SimPO, ORPO) the log-probs are per token, and without a reference (a
    reference-free run) the reward is `beta * logps`, as TRL's CPO and ORPO trainers log them."""
    logps = out.logps.detach()
    if methods.lead_method(args.loss_type).normalized:
        logps = logps / out.lengths.clamp(min=1)
    return logps, args.beta * (logps if ref_logps is None else logps - ref_logps)


class TrainingMetrics:
    """The metrics of the current logging window, per mode ("train" or "eval")."""

    def __init__(self, accelerator, args, designer_stats=None):
        self.accelerator, self.args, self.designer_stats = accelerator, args, designer_stats
        self.values = {"train": defaultdict(list), "eval": defaultdict(list)}  # name -> one value per batch
        self.sums = {"train": {}, "eval": {}}  # ObjectiveOutput.sums, added up until the next log
        self.total_tokens = 0
        self._last_log = (time.perf_counter(), 0)

    def record(self, mode: str, objective_metrics: dict, inputs: dict, out: ForwardOutput, ref_logps, sums=None):
        gather = self.accelerator.gather_for_metrics
        values = self.values[mode]
        n = len(out.logps) // 2
        logps, rewards = implicit_rewards(out, ref_logps, self.args)
        unpaired = methods.lead_method(self.args.loss_type).rows == methods.UNPAIRED
        if unpaired:  # one completion per row, labelled; the second slot is for KTO's KL estimate only
            desirable = gather(inputs["label"]).bool()  # gathered before selecting: equal shapes on every process
            row_rewards, row_logps = gather(rewards[:n]), gather(logps[:n])
            per_row = {"rewards/chosen": row_rewards[desirable], "rewards/rejected": row_rewards[~desirable],
                       "logps/chosen": row_logps[desirable], "logps/rejected": row_logps[~desirable]}
            if desirable.any() and not desirable.all():
                per_row["rewards/margins"] = per_row["rewards/chosen"].mean() - per_row["rewards/rejected"].mean()
        else:
            chosen_rewards, rejected_rewards = rewards.chunk(2)
            per_row = {
                "rewards/chosen": chosen_rewards,
                "rewards/rejected": rejected_rewards,
                "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
                "rewards/margins": chosen_rewards - rejected_rewards,
                "logps/chosen": logps[:n],
                "logps/rejected": logps[n:],
            }
            per_row = {key: gather(value) for key, value in per_row.items()}
        for key, value in per_row.items():
            if value.numel():  # a batch may hold no desirable (or no undesirable) row
                values[key].append(value.mean().item())
        if out.token_stats is not None:  # token-weighted over all processes, as TRL does
            for key, value in token_statistics(out.token_stats, inputs["response_index"], n,
                                               inputs["label"] if unpaired else None).items():
                total, count = self.accelerator.reduce(value, reduction="sum").tolist()
                if count:
                    values[key].append(total / count)
        for key, value in objective_metrics.items():
            values[key].append(gather(value.detach().reshape(1)).mean().item())
        for key, value in (sums or {}).items():
            total = self.accelerator.reduce(value.detach().to(self.args.device), reduction="sum").cpu()
            if torch.isfinite(total).all():  # a batch with non-finite log-probs is skipped or stops the run
                self.sums[mode][key] = self.sums[mode].get(key, 0) + total
        scores = inputs.get("designer_scores")
        if scores is not None and self.designer_stats is not None:
            scores = gather(scores)
            for k, name in enumerate(self.designer_stats.names):
                column = scores[:, k][~torch.isnan(scores[:, k])]
                if column.numel():
                    values[f"rewards/{name}/mean"].append(column.mean().item())
                    values[f"rewards/{name}/std"].append(column.std(unbiased=False).item())
        if mode == "train":
            # TRL's count: every response with its prompt, however the batch was laid out
            tokens = 2 * inputs["prompt_lengths"].sum() + out.lengths.sum()
            self.total_tokens += int(gather(tokens.reshape(1)).sum().item())
        values["num_tokens"] = [self.total_tokens]

    def window(self, mode: str) -> dict[str, float]:
        """The window's averages (and in training its throughput), then a new window."""
        metrics = {key: sum(values) / len(values) for key, values in self.values[mode].items()}
        for key, value in self.sums[mode].items():  # over the whole window: a batch's own variance is too noisy
            metrics[f"{key}/explained_variance"] = explained_variance(value)
        self.values[mode].clear()
        self.sums[mode] = {}
        if mode == "train":
            now = time.perf_counter()
            last_time, last_tokens = self._last_log
            if now > last_time and self.total_tokens > last_tokens:
                metrics["perf/tokens_per_second"] = (self.total_tokens - last_tokens) / (now - last_time)
            self._last_log = (now, self.total_tokens)
        return metrics
