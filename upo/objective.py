"""Which losses of `upo.losses` a batch gets, for every method the trainer offers, and what is logged about them.

    L = L_method + alpha * L_aux + L_value

`L_method` is the preference term (DPO and its family, KTO) or a baseline: MODPO and conditional SFT, or an
offline RL method (aoPPO, DRO-V, A-LOL) whose reward already holds `alpha` times the designer reward.
`alpha * L_aux + L_value` is UPO's designer term, added on top of the DPO family and KTO (KTO-UPO). MODPO and CSFT
with the designer term are refused (`check_designer_term`): MODPO already optimises the designer rewards, and a
grid would label such a run as the baseline it is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from upo import methods
from upo.errors import ConfigError
from upo.losses import (
    alol_loss,
    aoppo_loss,
    designer_loss,
    drov_loss,
    explained_variance_sums,
    kto_loss,
    label_rewards,
    preference_loss,
    sft_loss,
)


def uses_designer_term(args, has_rewards: bool) -> bool:
    return methods.uses_designer_term(args.loss_type, args.alpha, has_rewards)


def check_designer_term(args, has_rewards: bool) -> None:
    """Refuses UPO's designer term on top of a method that must not get it (`upo.methods.refused_designer_term`)."""
    method = methods.refused_designer_term(args.loss_type, args.alpha, has_rewards)
    if method is None:
        return
    reason = ", which already optimises the designer rewards" if method.designer == methods.MARGIN else ""
    raise ConfigError(
        f"loss_type {args.loss_type} with alpha={args.alpha} would add UPO's designer term to {method.family}{reason}: "
        f"set alpha: 0 for {method.family} alone, or use loss_type [sigmoid] (UPO) instead.")


def needs_value_head(args, has_rewards: bool) -> bool:
    return methods.needs_value_head(args.loss_type, args.alpha, has_rewards, args.value_baseline)


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor  # scalar
    metrics: dict[str, torch.Tensor]  # scalars; the `loss/*` ones name the terms that make up `loss`
    # Sums to add up over a logging window or an evaluation, not average: name -> `explained_variance_sums` of the
    # value's fit (logged as `{name}/explained_variance`).
    sums: dict[str, torch.Tensor] = field(default_factory=dict)


def compute_objective(
    args,
    logps: torch.Tensor,
    lengths: torch.Tensor,
    ref_logps: torch.Tensor,
    rewards: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    values: torch.Tensor | None = None,
    pair_weights: torch.Tensor | None = None,
    step_tokens: torch.Tensor | None = None,
    mean_over_processes=None,
) -> ObjectiveOutput:
    """The loss of one batch.

    Args:
        args: a `UPOConfig`.
        logps, lengths, ref_logps: policy log-probs, token counts and reference log-probs of the first then
            the second response of every row (chosen then rejected; for KTO, the completion then the
            mismatched completion). Shape: (2B,)
        rewards: `r_aux` of each response, `NaN` where no objective applies. Shape: (2B,)
        labels: KTO's labels, 1 desirable, 0 undesirable. Shape: (B,)
        values: the value head's `V(x)` per row. Shape: (B,)
        pair_weights: the dataset's `weight` column. Shape: (B,)
        step_tokens: `(chosen tokens, all tokens, designer tokens, designer responses)` of the whole optimizer
            step (`step_token_counts`), or None to average over this batch.
        mean_over_processes: maps a scalar to its mean over the training processes (KTO's reference point is
            averaged over them, as in TRL); None in one process.
    """
    n = len(logps) // 2
    method = methods.lead_method(args.loss_type)
    tokens = (None, None, None, None) if step_tokens is None else step_tokens
    logratios = logps - ref_logps
    metrics: dict[str, torch.Tensor] = {}
    if method.rows == methods.UNPAIRED:  # KTO
        kl_logratios = logratios[n:].detach()
        kl_mean = mean_over_processes(kl_logratios.mean()) if mean_over_processes is not None else None
        per_row, kl = kto_loss(logratios[:n], kl_logratios, labels, args.beta, args.desirable_weight,
                               args.undesirable_weight, kl_mean)
        if pair_weights is not None:
            per_row = per_row * pair_weights
        loss = per_row.mean()
        metrics["kl"] = kl  # the mismatched completions carry no designer reward (`upo.data.unpaired`)
    elif method.rows == methods.TAGGED:  # conditional SFT
        loss = sft_loss(logps, lengths, tokens[1])
    elif method.designer == methods.REWARD:
        reward = label_rewards(n, logps)
        if rewards is not None and args.alpha:
            reward = reward + args.alpha * torch.nan_to_num(rewards, nan=0.0)
        v = values.repeat(2)
        if method.loss_type == "aoppo":
            loss, value_loss, _ = aoppo_loss(logratios, lengths, reward, v, args.cliprange)
            metrics["loss/value"] = value_loss
            loss_total = loss + value_loss
        elif method.loss_type == "alol":
            loss, value_loss, advantages, ratio = alol_loss(logps, ref_logps, reward, v, args.alol_clip)
            metrics.update({"loss/value": value_loss, "alol/positive_frac": (advantages > 0).float().mean(),
                            "alol/ratio_mean": ratio.mean()})
            loss_total = loss + value_loss
        else:
            loss = loss_total = drov_loss(logratios, reward, v, args.beta)
        metrics["loss/pref"] = loss
        metrics["value_mean"] = values.mean()
        sums = {"value": explained_variance_sums(v, reward, torch.ones_like(reward, dtype=torch.bool))}
        return ObjectiveOutput(loss_total, metrics, sums)
    else:
        margin = None
        if rewards is not None:
            r_chosen, r_rejected = rewards.chunk(2)
            margin = torch.nan_to_num(r_chosen - r_rejected, nan=0.0)
        chosen_logps, rejected_logps = logps.chunk(2)
        ref_chosen, ref_rejected = ref_logps.chunk(2)
        chosen_lengths, rejected_lengths = lengths.chunk(2)
        loss = preference_loss(
            chosen_logps, rejected_logps, ref_chosen, ref_rejected, chosen_lengths, rejected_lengths,
            beta=args.beta, loss_type=args.loss_type, loss_weights=args.loss_weights,
            label_smoothing=args.label_smoothing, designer_margin=margin, modpo_weight=args.modpo_weight,
            pair_weights=pair_weights, sft_num_tokens=tokens[0],
        ).loss
    metrics["loss/pref"] = loss
    if not uses_designer_term(args, rewards is not None):
        return ObjectiveOutput(loss, metrics)

    designer = designer_loss(
        logps, lengths, rewards, value_baseline=args.value_baseline, values=values,
        expectile_tau=args.expectile_tau, aw_temperature=args.aw_temperature, aw_max_weight=args.aw_max_weight,
        num_tokens=tokens[2] if args.aux_normalization == "per_token" else tokens[3],
        normalization=args.aux_normalization,
    )
    weights = designer.weights[designer.mask]
    metrics.update({
        "loss/aux": designer.aux_loss,
        "loss/value": designer.value_loss,
        "aux/advantage_mean": designer.advantages[designer.mask].mean(),
        "aux/weight_mean": weights.mean(),
        "aux/weight_max": weights.max() if weights.numel() else weights.new_zeros(()),
        "aux/clip_frac": (weights >= args.aw_max_weight).float().mean(),
    })
    sums = {}
    if values is not None:
        metrics["aux/value_mean"] = values.mean()
        sums["value"] = explained_variance_sums(values.repeat(2), torch.nan_to_num(rewards, nan=0.0), designer.mask)
    return ObjectiveOutput(loss + args.alpha * designer.aux_loss + designer.value_loss, metrics, sums)
