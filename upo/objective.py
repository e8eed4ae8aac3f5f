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
from upo.logs import get_logger
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
from upo.rewards.target import DesignerTemperature, designer_temperature

logger = get_logger(__name__)


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


def apply_designer_target(args, rewards: torch.Tensor, term_on: bool) -> DesignerTemperature | None:
    """Sets `args.aw_temperature` from `args.designer_target` (`upo.rewards.target.designer_temperature`) and says so
    in one line (with the fix, where `aux_loss: awr` cannot approach the target). None when no target is set.

    Args:
        rewards: `r_aux` of both responses of every training pair, chosen then rejected. Shape: (2B,)
    """
    if args.designer_target is None:
        return None
    if not term_on:
        logger.warning(f"designer_target {args.designer_target} has no effect: this run has no UPO designer term "
                       f"(loss_type {args.loss_type}, alpha {args.alpha}).")
        return None
    solved = designer_temperature(rewards, args.designer_target)
    args.aw_temperature = solved.temperature
    logger.info(f"designer_target {solved.target:g} std: aw_temperature {solved.temperature:.4g} (reward scale "
                f"beta / T = {solved.reward_scale(args.beta):.4g}); reweighting the training responses reaches at most "
                f"{solved.pooled_ceiling:.2f} std, the better response of each pair {solved.pair_ceiling:.2f}.")
    if solved.awr_message is not None and args.aux_loss == "awr":
        logger.info(solved.awr_message)
    return solved


def needs_value_head(args, has_rewards: bool) -> bool:
    return methods.needs_value_head(args.loss_type, args.alpha, has_rewards, args.value_baseline, args.aux_loss)


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
    ref_logps: torch.Tensor | None,
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
            mismatched completion). Shape: (2B,). `ref_logps` is None for a run without a reference
            (`upo.methods.uses_reference`): its losses read none, and the log-ratios are the log-probs.
        rewards: `r_aux` of each response, `NaN` where no objective applies. Shape: (2B,)
        labels: KTO's labels, 1 desirable, 0 undesirable. Shape: (B,)
        values: the value head's `V(x)` per row. Shape: (B,)
        pair_weights: the dataset's `weight` column. Shape: (B,)
        step_tokens: `(chosen tokens, all tokens, designer tokens, designer responses, designer pairs)` of the
            whole optimizer step (`step_token_counts`), or None to average over this batch.
        mean_over_processes: maps a scalar to its mean over the training processes (KTO's reference point is
            averaged over them, as in TRL); None in one process.
    """
    n = len(logps) // 2
    method = methods.lead_method(args.loss_type)
    if ref_logps is None:
        ref_logps = torch.zeros_like(logps)
    tokens = (None,) * 5 if step_tokens is None else step_tokens
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
            pair_weights=pair_weights, sft_num_tokens=tokens[0], discopop_tau=args.discopop_tau,
            simpo_gamma=args.simpo_gamma, cpo_alpha=args.cpo_alpha,
        ).loss
    metrics["loss/pref"] = loss
    if not uses_designer_term(args, rewards is not None):
        return ObjectiveOutput(loss, metrics)

    term = methods.DESIGNER_TERMS[args.aux_loss]
    designer = designer_loss(
        logps, lengths, rewards, value_baseline="pair_mean" if term.pairwise else args.value_baseline,
        values=None if term.pairwise else values, expectile_tau=args.expectile_tau,
        aw_temperature=args.aw_temperature, aw_max_weight=args.aw_max_weight,
        num_tokens=tokens[2] if args.aux_normalization == "per_token" else tokens[3],
        normalization=args.aux_normalization, aux_loss=args.aux_loss, ref_logps=ref_logps, num_pairs=tokens[4],
    )
    metrics.update({"loss/aux": designer.aux_loss, "loss/value": designer.value_loss,
                    "aux/advantage_mean": designer.advantages[designer.mask].mean()})
    if term.pairwise:  # the share of pairs the policy already orders as the designer reward does
        pair_mask = designer.mask[:n] & designer.mask[n:]
        agrees = ((logratios[:n] - logratios[n:]) * (designer.weights[:n] - 0.5)).detach() > 0
        metrics["aux/pair_accuracy"] = agrees[pair_mask].float().mean() if pair_mask.any() else agrees.new_zeros(())
    else:
        weights = designer.weights[designer.mask]
        metrics.update({
            "aux/weight_mean": weights.mean(),
            "aux/weight_max": weights.max() if weights.numel() else weights.new_zeros(()),
            "aux/clip_frac": (weights >= args.aw_max_weight).float().mean(),
        })
    sums = {}
    if values is not None:
        metrics["aux/value_mean"] = values.mean()
        sums["value"] = explained_variance_sums(values.repeat(2), torch.nan_to_num(rewards, nan=0.0), designer.mask)
    return ObjectiveOutput(loss + args.alpha * designer.aux_loss + designer.value_loss, metrics, sums)
