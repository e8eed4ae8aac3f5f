"""The mathematics of UPO as pure functions over tensors: log-probs and rewards in, losses out.

Nothing here knows about models, tokenizers or trainers. Shapes use `B` for the number of preference
pairs in the batch, `M` for a number of responses (usually `2B`: chosen then rejected) and `K` for the
number of designer objectives. A `logps` tensor holds the *sum* of the per-token log-probabilities of a
response; `lengths` holds its number of response tokens.

    L = L_pref + alpha * L_aux + L_value            (UPO, see docs/METHOD.md)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Those `preference_loss` combines: the DPO family (TRL 1.16's loss types), MODPO, and the reference-free methods.
PREFERENCE_LOSS_TYPES = (
    "sigmoid", "ipo", "hinge", "sft", "modpo", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm", "simpo", "cpo", "orpo",
)
VALUE_BASELINES = ("value_head", "pair_mean", "batch_mean")
# How `L_aux` averages `w * log pi(y|x)`: over the response tokens of the batch, or over its responses (each
# response's log-prob summed over its tokens, as DPO's log-ratios are).
AUX_NORMALIZATIONS = ("per_token", "per_sequence")
# The designer term `L_aux`: "awr", the paper's advantage-weighted likelihood (positive weights only), or a signed form
# that can push a response below its reference probability (`infonca`, `exo` and `nca` on each pair's two responses,
# `topr` on each response). See "Signed designer terms" below.
AUX_LOSSES = ("awr", "infonca", "exo", "nca", "topr")


# --- Preference terms -------------------------------------------------------------------------------


def sigmoid_loss(logits: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """DPO (Rafailov et al. 2023, eq. 7), conservative with `label_smoothing` (cDPO).

    `-(1 - eps) * log sigmoid(beta * logits) - eps * log sigmoid(-beta * logits)`; `eps` is the
    probability that a label is flipped.

    Args:
        logits: `(chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)`. Shape: (B,)
    Returns:
        Per-pair loss. Shape: (B,)
    """
    loss = -F.logsigmoid(beta * logits)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-beta * logits)
    return loss


def averaged_margin(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, chosen_lengths: torch.Tensor,
                    rejected_lengths: torch.Tensor) -> torch.Tensor:
    """`h_c / n_c - h_r / n_r`: the pair's log-ratios each averaged over its response's tokens (IPO's and
    `sigmoid_norm`'s margin). Shapes: (B,) x 4 -> (B,)"""
    return chosen_logratios / chosen_lengths.clamp(min=1) - rejected_logratios / rejected_lengths.clamp(min=1)


def ipo_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """IPO (Azar et al. 2023, eq. 17): `(h - 1 / (2 beta))^2` on per-token averaged log-ratios.

    The per-token average follows TRL (confirmed with the IPO authors), so `beta` does not depend on length.

    Args:
        chosen_logratios, rejected_logratios: `logps - ref_logps` of each response. Shape: (B,)
        chosen_lengths, rejected_lengths: response token counts. Shape: (B,)
    Returns:
        Per-pair loss. Shape: (B,)
    """
    h = averaged_margin(chosen_logratios, rejected_logratios, chosen_lengths, rejected_lengths)
    return (h - 1 / (2 * beta)) ** 2


def hinge_loss(logits: torch.Tensor, beta: float) -> torch.Tensor:
    """SLiC hinge (Zhao et al. 2023): `relu(1 - beta * logits)`. Shapes: (B,) -> (B,)"""
    return torch.relu(1 - beta * logits)


def sft_loss(chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor, num_tokens=None) -> torch.Tensor:
    """Negative log-likelihood of the chosen responses, averaged over their tokens (RPO's NLL term).

    Args:
        chosen_logps: summed log-probs. Shape: (B,)
        chosen_lengths: token counts. Shape: (B,)
        num_tokens: the token count to divide by, when it is not this batch's own (see `step_token_counts`).
    Returns:
        Scalar: `-sum(chosen_logps) / sum(chosen_lengths)`.
    """
    denominator = chosen_lengths.sum().clamp(min=1) if num_tokens is None else num_tokens
    return -chosen_logps.sum() / denominator


def modpo_loss(
    logits: torch.Tensor, designer_margin: torch.Tensor, beta: float, modpo_weight: float
) -> torch.Tensor:
    """MODPO (Zhou et al. 2024, eq. 9): DPO whose logit is shifted by the designer reward margin.

    With `w = modpo_weight` on the designer objectives and `w0 = 1 - w` on the preference:
    `-log sigmoid((beta * logits - w * designer_margin) / w0)`. `w = 0` is DPO.

    Args:
        logits: the DPO logit (difference of log-ratios). Shape: (B,)
        designer_margin: `r_aux(chosen) - r_aux(rejected)`, 0 where not applicable. Shape: (B,)
    Returns:
        Per-pair loss. Shape: (B,)
    """
    w0 = 1.0 - modpo_weight
    return -F.logsigmoid((beta * logits - modpo_weight * designer_margin) / w0)


# TRL 1.16's other DPO loss types (`DPOTrainer._compute_loss`), each as TRL computes it. `logits` is the DPO logit
# `h = (logp_c - ref_logp_c) - (logp_r - ref_logp_r)`; a log-ratio is `logp - ref_logp` of one response, summed over
# its tokens.


def robust_loss(logits: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    """Robust DPO (Chowdhury et al. 2024, "Provably Robust DPO", eq. 8): an unbiased DPO loss under labels flipped with
    probability `eps = label_smoothing`, in [0, 0.5).

    `(-(1 - eps) log sigmoid(beta h) + eps log sigmoid(-beta h)) / (1 - 2 eps)`; `eps = 0` is DPO.
    Intuition: the flipped-label term is subtracted (cDPO adds it), so the loss's expectation over noisy labels is
    DPO's on the clean ones. Shapes: (B,) -> (B,)
    """
    clean = -(1 - label_smoothing) * F.logsigmoid(beta * logits)
    flipped = -label_smoothing * F.logsigmoid(-beta * logits)
    return (clean - flipped) / (1 - 2 * label_smoothing)


def exo_preference_loss(logits: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    """EXO-pref (Ji et al. 2024, "Towards Efficient Exact Optimization of Language Model Alignment", eq. 16): the
    reverse KL of the pair's policy distribution `p = sigmoid(beta h)` from the label distribution `(1 - eps, eps)`.

    `p (log p - log(1 - eps)) + (1 - p) (log(1 - p) - log eps)`; `eps = label_smoothing` must be above 0 (the paper:
    1e-3). It is `exo_pair_loss(beta h, log((1 - eps) / eps))`, the designer term's EXO with a hard label.
    Intuition: mode-seeking where DPO is mass-covering: it stops at `p = 1 - eps` instead of pushing `h` without end.
    Shapes: (B,) -> (B,)
    """
    epsilon = torch.as_tensor(label_smoothing, dtype=logits.dtype, device=logits.device)
    p, log_p, log_1mp = torch.sigmoid(beta * logits), F.logsigmoid(beta * logits), F.logsigmoid(-beta * logits)
    return p * (log_p - torch.log1p(-epsilon)) + (1 - p) * (log_1mp - torch.log(epsilon))


def nca_preference_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float
                        ) -> torch.Tensor:
    """NCA on a pair (Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards", with
    the chosen response's label 1): `-log sigmoid(beta h_c) - (log sigmoid(-beta h_c) + log sigmoid(-beta h_r)) / 2`.

    Each response's own log-ratio is pinned, not only their difference, so chosen cannot sink with rejected as under
    DPO. It is `nca_pair_loss(beta h_c, beta h_r, +inf)`, the designer term's NCA with a hard label.
    Shapes: (B,), (B,) -> (B,)
    """
    chosen, rejected = beta * chosen_logratios, beta * rejected_logratios
    return -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)


def bco_pair_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float) -> torch.Tensor:
    """BCO on pairs (Jung et al. 2024, "Binary Classifier Optimization"), as TRL 1.16 computes it (no running reward
    shift `delta`): `-log sigmoid(beta h_c) - log sigmoid(-beta h_r)`, each response classified on its own.
    Shapes: (B,), (B,) -> (B,)"""
    return -F.logsigmoid(beta * chosen_logratios) - F.logsigmoid(-beta * rejected_logratios)


def sppo_hard_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float) -> torch.Tensor:
    """SPPO (Wu et al. 2024, "Self-Play Preference Optimization", eq. 4.7) with hard probabilities, 1 for the chosen
    and 0 for the rejected response: `(h_c - 1 / (2 beta))^2 + (h_r + 1 / (2 beta))^2`.

    Each log-ratio is regressed to its own target, `+-1 / (2 beta)`. Shapes: (B,), (B,) -> (B,)
    """
    return (chosen_logratios - 0.5 / beta) ** 2 + (rejected_logratios + 0.5 / beta) ** 2


def _smoothed_sigmoid(delta: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    """cDPO's `-(1 - eps) log sigmoid(beta d) - eps log sigmoid(-beta d)` (as `sigmoid_loss`). Shapes: (B,) -> (B,)"""
    return (-F.logsigmoid(beta * delta) * (1 - label_smoothing) - F.logsigmoid(-beta * delta) * label_smoothing)


def aot_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """AOT, paired (Melnyk et al. 2024, "Distributional Preference Alignment of LLMs via Optimal Transport"): DPO's
    loss on sorted margins, `d_(i) = sort(logp_c - logp_r)_(i) - sort(ref_logp_c - ref_logp_r)_(i)`.

    Sorting the batch's policy margins and reference margins apart and matching them by rank makes the loss a
    first-order stochastic dominance of the policy's margin distribution over the reference's. Row `i` of the result
    is the `i`-th smallest margin, not pair `i`: per-pair weights do not apply. Shapes: (B,) x 4 -> (B,)
    """
    margins, _ = torch.sort(chosen_logps - rejected_logps, dim=0)
    ref_margins, _ = torch.sort(ref_chosen_logps - ref_rejected_logps, dim=0)
    return _smoothed_sigmoid(margins - ref_margins, beta, label_smoothing)


def aot_unpaired_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float,
                      label_smoothing: float = 0.0) -> torch.Tensor:
    """AOT, unpaired (Melnyk et al. 2024; TRL's `aot_unpaired`, once `aot_pair`): the chosen log-ratios and the
    rejected ones sorted apart, `d_(i) = sort(h_c)_(i) - sort(h_r)_(i)`, in DPO's loss: the distribution of chosen
    rewards made to dominate the rejected ones'. Row `i` is a rank, not a pair. Shapes: (B,), (B,) -> (B,)"""
    chosen, _ = torch.sort(chosen_logratios, dim=0)
    rejected, _ = torch.sort(rejected_logratios, dim=0)
    return _smoothed_sigmoid(chosen - rejected, beta, label_smoothing)


def apo_zero_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float) -> torch.Tensor:
    """APO-zero (D'Oosterlinck et al. 2024, "Anchored Preference Optimization", eq. 7): `1 - sigmoid(beta h_c) +
    sigmoid(beta h_r)`: raise the chosen response, lower the rejected one, each against the reference (for chosen
    responses better than the model's own). Shapes: (B,), (B,) -> (B,)"""
    return 1 - torch.sigmoid(beta * chosen_logratios) + torch.sigmoid(beta * rejected_logratios)


def apo_down_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float) -> torch.Tensor:
    """APO-down (D'Oosterlinck et al. 2024, eq. 8): `sigmoid(beta h_c) + 1 - sigmoid(beta (h_c - h_r))`: lower both,
    the rejected one more (for chosen responses worse than the model's own). Shapes: (B,), (B,) -> (B,)"""
    return torch.sigmoid(beta * chosen_logratios) + 1 - torch.sigmoid(beta * (chosen_logratios - rejected_logratios))


def discopop_loss(logits: torch.Tensor, beta: float, tau: float) -> torch.Tensor:
    """DiscoPOP (Chris Lu et al. 2024, "Discovering Preference Optimization Algorithms with and for Large Language
    Models", eq. 5; the log-ratio modulated loss): with `x = beta h` and `m = sigmoid(x / tau)`,
    `(1 - m) (-log sigmoid(x)) + m exp(-x)`: DPO's logistic loss where the policy is behind, an exponential one where
    it is ahead (`tau`: the paper's 0.05). Shapes: (B,) -> (B,)"""
    x = beta * logits
    modulation = torch.sigmoid(x / tau)
    return -F.logsigmoid(x) * (1 - modulation) + torch.exp(-x) * modulation


def sigmoid_norm_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Length-normalised DPO (TRL's `sigmoid_norm`): `-log sigmoid(beta (h_c / n_c - h_r / n_r))`, each log-ratio
    averaged over its response's tokens, as IPO's (`ipo_loss`), so a long response does not win by its length.
    Shapes: (B,) x 4 -> (B,)"""
    h = averaged_margin(chosen_logratios, rejected_logratios, chosen_lengths, rejected_lengths)
    return -F.logsigmoid(beta * h)


# Reference-free methods: the policy's log-probs alone, no reference model (`upo.methods.Method.reference`).


def simpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    beta: float,
    gamma: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """SimPO (Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward", eq. 6):
    `-log sigmoid(beta (logp_c / n_c - logp_r / n_r) - gamma)`, with cDPO's `label_smoothing` as TRL's CPOTrainer
    (`loss_type="simpo"`) applies it.

    The reward is the response's average token log-prob (no reference), and the chosen one must beat the rejected
    one by the margin `gamma` (`simpo_gamma`). The paper's `beta` is 2 to 2.5, with `gamma / beta` about 0.5.

    Args:
        chosen_logps, rejected_logps: the policy's summed log-probs. Shape: (B,)
        chosen_lengths, rejected_lengths: token counts. Shape: (B,)
    Returns:
        Per-pair loss. Shape: (B,)
    """
    margin = chosen_logps / chosen_lengths.clamp(min=1) - rejected_logps / rejected_lengths.clamp(min=1)
    return _smoothed_sigmoid(margin - gamma / beta, beta, label_smoothing)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """`log(1 - exp(x))` for `x < 0`, without cancellation (Maechler 2012: `log(-expm1(x))` above `-log 2`,
    `log1p(-exp(x))` below). Shapes: (B,) -> (B,)"""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_odds_ratio_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ORPO's odds-ratio term (Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference Model",
    eqs. 4-7): `-beta log sigmoid(log odds(y_c) - log odds(y_r))`, `odds(y) = P(y) / (1 - P(y))` with `P(y)` the
    response's average token probability, `log P = logp / n`. `beta` is the paper's `lambda` (TRL's ORPOConfig
    `beta`). ORPO adds it to the NLL of the chosen responses (`sft_loss`), which the objective does.

    Args:
        chosen_logps, rejected_logps: the policy's summed log-probs. Shape: (B,)
        chosen_lengths, rejected_lengths: token counts. Shape: (B,)
    Returns:
        `(per-pair loss, log odds ratio)`. Shapes: (B,), (B,)
    """
    chosen = chosen_logps / chosen_lengths.clamp(min=1)
    rejected = rejected_logps / rejected_lengths.clamp(min=1)
    log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
    return -beta * F.logsigmoid(log_odds), log_odds


@dataclass
class PreferenceOutput:
    loss: torch.Tensor  # scalar, weighted sum over loss types
    components: dict[str, torch.Tensor]  # loss type -> scalar (unweighted)


def preference_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    *,
    beta: float,
    loss_type: list[str] | tuple[str, ...] = ("sigmoid",),
    loss_weights: list[float] | None = None,
    label_smoothing: float = 0.0,
    designer_margin: torch.Tensor | None = None,
    modpo_weight: float = 0.0,
    pair_weights: torch.Tensor | None = None,
    sft_num_tokens=None,
    discopop_tau: float = 0.05,
    simpo_gamma: float = 0.5,
    cpo_alpha: float = 1.0,
) -> PreferenceOutput:
    """The preference term `L_pref`: several loss types combined with `loss_weights`, as TRL does.

    Args:
        chosen_logps, rejected_logps: policy summed log-probs. Shape: (B,)
        ref_chosen_logps, ref_rejected_logps: reference summed log-probs (zeros for a reference-free method, which
            does not read them). Shape: (B,)
        chosen_lengths, rejected_lengths: response token counts. Shape: (B,)
        designer_margin: `r_aux(chosen) - r_aux(rejected)`, needed by "modpo". Shape: (B,)
        pair_weights: optional per-pair weights (the dataset's `weight` column); they weigh each pair's preference
            loss, not the NLL of "sft", "cpo" and "orpo". Shape: (B,)
        sft_num_tokens: the denominator of the NLL ("sft", "cpo", "orpo") when it is not this batch's chosen tokens.
        discopop_tau, simpo_gamma, cpo_alpha: the options of "discopop", "simpo" and "cpo" (TRL's names).
    Returns:
        `loss`: `sum_t loss_weights[t] * loss_t`, a scalar, `loss_t` the mean over pairs (plus the NLL of "cpo" and
        "orpo"); `components`: each `loss_t`.
    """
    weights = loss_weights if loss_weights is not None else [1.0] * len(loss_type)
    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    logits = chosen_logratios - rejected_logratios
    ratios = (chosen_logratios, rejected_logratios)
    lengths = (chosen_lengths, rejected_lengths)

    total = chosen_logps.new_zeros(())
    components = {}
    for name, weight in zip(loss_type, weights, strict=True):
        nll = None  # an NLL of the chosen responses, added after the mean over pairs (never weighted per pair)
        if name == "sigmoid":
            per_pair = sigmoid_loss(logits, beta, label_smoothing)
        elif name == "ipo":
            per_pair = ipo_loss(*ratios, *lengths, beta)
        elif name == "hinge":
            per_pair = hinge_loss(logits, beta)
        elif name == "modpo":
            if designer_margin is None:
                raise ValueError("loss_type 'modpo' needs designer rewards: set `reward_funcs`.")
            per_pair = modpo_loss(logits, designer_margin, beta, modpo_weight)
        elif name == "sft":
            per_pair = sft_loss(chosen_logps, chosen_lengths, sft_num_tokens).expand_as(logits)
        elif name == "robust":
            per_pair = robust_loss(logits, beta, label_smoothing)
        elif name == "exo_pair":
            per_pair = exo_preference_loss(logits, beta, label_smoothing)
        elif name == "nca_pair":
            per_pair = nca_preference_loss(*ratios, beta)
        elif name == "bco_pair":
            per_pair = bco_pair_loss(*ratios, beta)
        elif name == "sppo_hard":
            per_pair = sppo_hard_loss(*ratios, beta)
        elif name == "aot":
            per_pair = aot_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta,
                                label_smoothing)
        elif name == "aot_unpaired":
            per_pair = aot_unpaired_loss(*ratios, beta, label_smoothing)
        elif name == "apo_zero":
            per_pair = apo_zero_loss(*ratios, beta)
        elif name == "apo_down":
            per_pair = apo_down_loss(*ratios, beta)
        elif name == "discopop":
            per_pair = discopop_loss(logits, beta, discopop_tau)
        elif name == "sigmoid_norm":
            per_pair = sigmoid_norm_loss(*ratios, *lengths, beta)
        elif name == "simpo":
            per_pair = simpo_loss(chosen_logps, rejected_logps, *lengths, beta, simpo_gamma, label_smoothing)
        elif name == "cpo":  # Xu et al. 2024, eq. 3 + BC: DPO's loss on the policy's log-probs alone, + NLL
            per_pair = sigmoid_loss(chosen_logps - rejected_logps, beta, label_smoothing)
            nll = cpo_alpha * sft_loss(chosen_logps, chosen_lengths, sft_num_tokens) if cpo_alpha else None
        elif name == "orpo":  # Hong et al. 2024, eq. 6: NLL + lambda * odds-ratio term
            per_pair, _ = orpo_odds_ratio_loss(chosen_logps, rejected_logps, *lengths, beta)
            nll = sft_loss(chosen_logps, chosen_lengths, sft_num_tokens)
        else:
            raise ValueError(f"Unknown loss_type {name!r}; expected one of {PREFERENCE_LOSS_TYPES}.")
        if pair_weights is not None and name != "sft":
            per_pair = per_pair * pair_weights
        components[name] = per_pair.mean() if nll is None else per_pair.mean() + nll
        total = total + weight * components[name]
    return PreferenceOutput(loss=total, components=components)


# --- Baselines: unpaired feedback and offline RL on the pairs -----------------------------------------


def kto_loss(
    logratios: torch.Tensor,
    kl_logratios: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    kl_mean: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """KTO (Ethayarajh et al. 2024, eq. 8) on unpaired responses, with TRL's estimate of the reference point.

    `z = max(0, mean(kl_logratios))`, detached: the policy's KL to the reference estimated on mismatched
    (prompt, completion) pairs. A desirable response costs `w_d * (1 - sigmoid(beta * (h - z)))`, an
    undesirable one `w_u * (1 - sigmoid(beta * (z - h)))`.

    Args:
        logratios: `logps - ref_logps` of each response. Shape: (B,)
        kl_logratios: the same for a completion of another prompt, paired with this prompt. Shape: (B,)
        labels: 1 for desirable, 0 for undesirable. Shape: (B,)
        kl_mean: the mean of `kl_logratios` over every process's batch, when training on several (as TRL
            does); None: this batch's mean. Shape: ()
    Returns:
        `(per-response loss, z)`. Shapes: (B,), ()
    """
    z = (kl_logratios.mean() if kl_mean is None else kl_mean).detach().clamp(min=0)
    desirable = labels.to(torch.bool)
    loss = torch.where(
        desirable,
        desirable_weight * (1 - torch.sigmoid(beta * (logratios - z))),
        undesirable_weight * (1 - torch.sigmoid(beta * (z - logratios))),
    )
    return loss, z


def label_rewards(n_pairs: int, reference: torch.Tensor) -> torch.Tensor:
    """The preference label as a reward: +1 for each chosen response, -1 for each rejected one. Shape: (2B,)"""
    ones = reference.new_ones(n_pairs)
    return torch.cat([ones, -ones])


def aoppo_loss(
    logratios: torch.Tensor,
    lengths: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    cliprange: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One-step offline PPO (aoPPO): PPO's clipped objective on the dataset's responses, the reference as behaviour.

    `A = stopgrad(r - V(x))`, normalised over the batch to mean 0 and std 1. The ratio is per token and sequence
    level, `rho = exp((logp - ref_logp) / n)` (the reference's log-probs are sums, so per-token ratios are not
    available; this length-normalised ratio keeps long responses from leaving the clip range at once).
    `L_policy = -mean(min(rho * A, clip(rho, 1 - eps, 1 + eps) * A))`, `L_value = mean((V(x) - r)^2)`.

    Args:
        logratios: `logps - ref_logps` of each response. Shape: (M,)
        lengths: response token counts. Shape: (M,)
        rewards: the reward of each response. Shape: (M,)
        values: `V(x)` of each response's prompt. Shape: (M,)
    Returns:
        `(L_policy, L_value, normalised advantages)`. Shapes: (), (), (M,)
    """
    advantages = (rewards - values).detach()
    if advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    ratio = torch.exp(logratios / lengths.clamp(min=1))
    clipped = torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    policy = -torch.min(ratio * advantages, clipped * advantages).mean()
    value = ((values - rewards) ** 2).mean()
    return policy, value, advantages


def drov_loss(logratios: torch.Tensor, rewards: torch.Tensor, values: torch.Tensor, beta: float) -> torch.Tensor:
    """DRO-V (Richemond et al. 2024): `mean(0.5 * (r - V(x) - beta * log(pi / pi_ref))^2)`.

    One squared loss trains both the policy (through `logratios`) and the value (through `values`).

    Args:
        logratios: `logps - ref_logps` of each response (summed over its tokens). Shape: (M,)
        rewards: the reward of each response. Shape: (M,)
        values: `V(x)` of each response's prompt. Shape: (M,)
    Returns:
        Scalar.
    """
    return (0.5 * (rewards - values - beta * logratios) ** 2).mean()


def alol_loss(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    clip: float = 0.9,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A-LOL (Baheti et al. 2023, "Leftover Lunch"): the whole response is one action of an offline policy gradient.

    `A = max(0, stopgrad(r - V(x)))`: responses worse than the value get no weight. The importance weight against
    the reference, `rho = clip(pi(y|x) / pi_ref(y|x), 1 - eps, 1 + eps)`, is detached (the gradient is
    `A * rho * grad log pi`, as in the authors' code), and `log pi(y|x)` is summed over the response's tokens.
    `L_policy = -mean(A * rho * logp)`, `L_value = mean((V(x) - r)^2)`.

    Args:
        logps: the policy's summed log-probs of each response. Shape: (M,)
        ref_logps: the reference's. Shape: (M,)
        rewards: the reward of each response. Shape: (M,)
        values: `V(x)` of each response's prompt. Shape: (M,)
        clip: `eps`; the authors' default is 0.9.
    Returns:
        `(L_policy, L_value, clipped advantages, clipped importance weights)`. Shapes: (), (), (M,), (M,)
    """
    advantages = (rewards - values).detach().clamp(min=0)
    ratio = torch.exp((logps - ref_logps).detach()).clamp(1 - clip, 1 + clip)
    policy = -(advantages * ratio * logps).mean()
    value = ((values - rewards) ** 2).mean()
    return policy, value, advantages, ratio


# --- Designer rewards -------------------------------------------------------------------------------


def designer_statistics(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-objective mean and standard deviation over the training responses, ignoring `NaN` ("None").

    Args:
        scores: raw designer scores of every response, `NaN` where not applicable. Shape: (M, K)
    Returns:
        `(mean, std)`, each of shape (K,). The std is the population std; 1 where it is 0 or undefined,
        so a constant objective standardises to 0 instead of dividing by 0.
    """
    applicable = ~torch.isnan(scores)
    count = applicable.sum(0).clamp(min=1)
    filled = torch.where(applicable, scores, torch.zeros_like(scores))
    mean = filled.sum(0) / count
    var = (torch.where(applicable, scores - mean, torch.zeros_like(scores)) ** 2).sum(0) / count
    std = var.sqrt()
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def combine_designer_rewards(
    scores: torch.Tensor, weights: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """`r_aux = sum_k w_k * (r_k - mean_k) / std_k` over the objectives that apply to each response.

    Standardising first makes the weights priorities rather than units. An objective whose score is
    `NaN` ("None": not applicable) contributes nothing; a response where none applies gets `NaN`.

    Args:
        scores: raw scores. Shape: (M, K)
        weights, mean, std: per objective. Shape: (K,)
    Returns:
        `r_aux`. Shape: (M,)
    """
    applicable = ~torch.isnan(scores)
    z = torch.where(applicable, (scores - mean) / std, torch.zeros_like(scores))
    r_aux = (z * weights).sum(-1)
    return torch.where(applicable.any(-1), r_aux, torch.full_like(r_aux, float("nan")))


def expectile_loss(values: torch.Tensor, targets: torch.Tensor, tau: float, mask: torch.Tensor) -> torch.Tensor:
    """Expectile regression (IQL, Kostrikov et al. 2022): `mean(|tau - 1[u < 0]| * u^2)`, `u = target - value`.

    `tau > 0.5` pushes the value towards an upper expectile of the rewards, so only responses better than
    most get a positive advantage.

    Args:
        values: `V(x)` of each response's prompt. Shape: (M,)
        targets: `r_aux` of each response (any value where `mask` is False). Shape: (M,)
        mask: which responses have a designer reward. Shape: (M,)
    Returns:
        Scalar, averaged over the masked responses (0 when none, still connected to `values`).
    """
    u = torch.where(mask, targets - values, values * 0)
    weight = torch.abs(tau - (u < 0).to(values.dtype))
    return (weight * u**2 * mask).sum() / mask.sum().clamp(min=1)


def advantage_weights(advantages: torch.Tensor, temperature: float, max_weight: float) -> torch.Tensor:
    """AWR weights `min(exp(A / temperature), max_weight)` (Peng et al. 2019). Shapes: (M,) -> (M,)

    The cap keeps one lucky response from dominating the batch; `A` must already be detached.
    """
    return torch.clamp(torch.exp(advantages / temperature), max=max_weight)


def aux_denominator(lengths: torch.Tensor | None, maskf: torch.Tensor, num_tokens, normalization: str):
    """`D` of a per-response designer term: `num_tokens` when given (the whole step's, `step_token_counts`), else this
    batch's response tokens ("per_token") or responses ("per_sequence") that have a designer reward.
    Shapes: (M,), (M,) -> ()"""
    if num_tokens is not None:
        return num_tokens
    if normalization == "per_token":
        return (lengths * maskf).sum().clamp(min=1)
    if normalization == "per_sequence":
        return maskf.sum().clamp(min=1)
    raise ValueError(f"Unknown normalization {normalization!r}; expected one of {AUX_NORMALIZATIONS}.")


def advantage_weighted_nll(
    logps: torch.Tensor,
    lengths: torch.Tensor,
    weights: torch.Tensor,
    mask: torch.Tensor,
    num_tokens=None,
    normalization: str = "per_sequence",
) -> torch.Tensor:
    """`L_aux = -sum_i w_i * logp_i / D` over the responses that have a designer reward.

    `normalization` chooses `D`: "per_sequence" (the default), the number of responses: each response's summed
    log-prob, `log pi(y|x)` as the paper writes it, weighs the same, as DPO's log-ratios and the KTO/HALOs code
    do; "per_token", the batch's response tokens `sum_i n_i` (every token weighs the same, long responses do not
    dominate, and the term is about a response's length times weaker against `L_pref`).

    Args:
        logps: summed log-probs of each response. Shape: (M,)
        lengths: token counts. Shape: (M,)
        weights: advantage weights, detached. Shape: (M,)
        mask: which responses have a designer reward. Shape: (M,)
        num_tokens: `D`, when it is not this batch's own (see `step_token_counts`).
    Returns:
        Scalar.
    """
    maskf = mask.to(logps.dtype)
    return -(weights * logps * maskf).sum() / aux_denominator(lengths, maskf, num_tokens, normalization)


# --- Signed designer terms --------------------------------------------------------------------------------------
# UPO's target is `pi*(y|x) = pi_ref(y|x) * exp(r_aux(x, y) / T) / Z(x)`. On a pair (y_1, y_2) of the same prompt it
# fixes one number, the difference of log-ratios `h_1 - h_2 = (r_1 - r_2) / T` (`h = log pi/pi_ref`, summed over the
# response, as DPO's); `V(x)` and `Z(x)` cancel. The pair forms below fit that number from the two sides, so they can
# lower the worse response's probability below its reference one, which "awr" (positive weights) never does. They
# use the log-probs the DPO forward already has and no sampling. A pair where a side has no designer reward is left
# out of them.


def designer_pair_logits(rewards: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The target logit of each pair, `(r_chosen - r_rejected) / T`, and which pairs have both rewards.

    `sigmoid` of it is the target's probability of the chosen response within the pair,
    `q = softmax(r_aux / T)[chosen]` (Bradley-Terry on the designer reward at temperature `T`).

    Args:
        rewards: `r_aux`, chosen then rejected, `NaN` where no objective applies. Shape: (2B,)
    Returns:
        `(target logits, 0 where a side has no reward; pair mask)`. Shapes: (B,), (B,)
    """
    r_chosen, r_rejected = rewards.chunk(2)
    mask = ~(torch.isnan(r_chosen) | torch.isnan(r_rejected))
    margin = torch.where(mask, r_chosen - r_rejected, torch.zeros_like(r_chosen))
    return margin / temperature, mask


def infonca_pair_loss(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """InfoNCA (Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards"; the
    authors' `nca_loss` with `loss_type="InfoNCA"`) over each pair's two responses, with UPO's soft targets: the
    forward KL of the pair's target from the policy's.

    `q = sigmoid(z)`, `z = (r_c - r_r) / T` (soft labels `softmax(r / T)`); `p = sigmoid(d)`, `d = h_c - h_r` the DPO
    logit (the model logits `log pi/pi_ref` under a softmax over the pair, scale 1: `T` sets the strength of the tilt);
    `loss = KL(q || p) = -q log p - (1 - q) log(1 - p) - H(q)`. InfoNCA's cross-entropy minus the targets' entropy
    `H(q)`, a constant: the same gradient, 0 at the fixed point. It is cDPO (`sigmoid_loss`) with `beta = 1` and
    `label_smoothing = 1 - q`, minus `H(q)`.
    Intuition: each pair is a two-way classification whose soft label is UPO's target; the gradient `p - q` raises
    the response the target prefers and lowers the other until their ratio is the target's, then stops.

    Fixed point: `d = z`, i.e. `pi(y_c)/pi(y_r) = pi_ref(y_c)/pi_ref(y_r) * exp((r_c - r_r) / T)` on every pair; with
    pairs drawn from `pi_ref` and a policy free enough, `pi = pi_ref * exp(r_aux / T) / Z` exactly (the ratios of
    all pairs agree with that one distribution). The pair's common log-ratio `h_c + h_r` is left free (as DPO leaves
    it): nothing here stops both responses from losing probability together (see `nca_pair_loss`).
    Bounds: `>= 0`; grows linearly as `|d| -> inf` (slope `q` or `1 - q`, as DPO's loss on the wrong side);
    `|dL/dd| = |p - q| <= 1`.

    Args:
        logits: `d = (logp_c - ref_logp_c) - (logp_r - ref_logp_r)`. Shape: (B,)
        target_logits: `z`, from `designer_pair_logits`. Shape: (B,)
    Returns:
        Per-pair loss. Shape: (B,)
    """
    q = torch.sigmoid(target_logits)
    log_p, log_1mp = F.logsigmoid(logits), F.logsigmoid(-logits)
    log_q, log_1mq = F.logsigmoid(target_logits), F.logsigmoid(-target_logits)
    return q * (log_q - log_p) + (1 - q) * (log_1mq - log_1mp)


def exo_pair_loss(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """EXO (Ji et al. 2024, "Towards Efficient Exact Optimization of Language Model Alignment"; the authors'
    `exact_loss` with `loss_type="exo-rw"`, two samples, `beta_pi = 1`, `beta_r = T`): the reverse KL of the pair's
    policy distribution from its target.

    With `p = sigmoid(d)`, `q = sigmoid(z)` as in `infonca_pair_loss`: `loss = KL(p || q)
    = p (log p - log q) + (1 - p) (log(1 - p) - log(1 - q))`.
    Intuition: mode-seeking where InfoNCA is mass-covering: the gradient `p (1 - p) (d - z)` is large near the target
    and fades when the policy is far on either side, so a pair the policy has already decided strongly moves little.

    Fixed point: `d = z`, the same as `infonca_pair_loss` (and `pi = pi_ref * exp(r_aux / T) / Z` when pairs are drawn
    from `pi_ref`); the two differ in how they trade pairs off when the policy cannot satisfy them all.
    Bounds: `0 <= loss <= max(-log q, -log(1 - q)) = softplus(|z|)` for any `d`; the common log-ratio is free.

    Args:
        logits: `d`, the DPO logit. Shape: (B,)
        target_logits: `z`, from `designer_pair_logits`. Shape: (B,)
    Returns:
        Per-pair loss. Shape: (B,)
    """
    p = torch.sigmoid(logits)
    log_p, log_1mp = F.logsigmoid(logits), F.logsigmoid(-logits)
    log_q, log_1mq = F.logsigmoid(target_logits), F.logsigmoid(-target_logits)
    return p * (log_p - log_q) + (1 - p) * (log_1mp - log_1mq)


def nca_pair_loss(
    chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, target_logits: torch.Tensor
) -> torch.Tensor:
    """NCA (Chen et al. 2024; the authors' `nca_loss` with `loss_type="NCA"`, `K = 2` responses, soft labels) over
    each pair: binary NCE of each response against the reference, which also fixes each log-ratio, not only their
    difference.

    `q_c = sigmoid(z)`, `q_r = 1 - q_c`; `loss = -q_c log sigmoid(h_c) - q_r log sigmoid(h_r)
    - (log sigmoid(-h_c) + log sigmoid(-h_r)) / 2`, with `h = log pi/pi_ref` summed over the response (scale 1).
    Intuition: the target-weighted first part raises each response, the second ("absolute") part lowers both; their
    balance pins each response's log-ratio, so the two cannot sink together as under DPO or InfoNCA.

    Fixed point, per pair: `h_c = log(2 q_c)`, `h_r = log(2 q_r)`: `h_c - h_r = (r_c - r_r) / T` as the target, each
    ratio in `(0, 2)` (the pair's two responses estimate `Z(x)`). Over pairs drawn from `pi_ref` it does NOT reach
    UPO's target: its population optimum is `pi(y)/pi_ref(y) = 2 E_{y' ~ pi_ref}[sigmoid((r(y) - r(y')) / T)]`, a
    tilt by the response's soft win rate, at most 2 (as `T -> 0`, twice its reward's quantile under `pi_ref`: for a
    normal designer reward the mean then rises by at most `sigma / sqrt(pi)`, 0.56 std, whatever `T`).
    Bounds: `>= 0` and finite for any `h`; grows like `|h|` as either log-ratio goes to `-inf` or `+inf`.

    Args:
        chosen_logratios, rejected_logratios: `logps - ref_logps` of each response. Shape: (B,)
        target_logits: `z`, from `designer_pair_logits`. Shape: (B,)
    Returns:
        Per-pair loss. Shape: (B,)
    """
    q = torch.sigmoid(target_logits)
    attract = q * F.logsigmoid(chosen_logratios) + (1 - q) * F.logsigmoid(rejected_logratios)
    repel = (F.logsigmoid(-chosen_logratios) + F.logsigmoid(-rejected_logratios)) / 2
    return -attract - repel


def tapered_push_down(logratios: torch.Tensor) -> torch.Tensor:
    """`f(h) = exp(h)` for `h <= 0`, `1 + h` above: a loss whose gradient in `h = log pi/pi_ref` is TOPR's truncated
    importance weight `min(pi/pi_ref, 1)`. Shapes: (M,) -> (M,)

    Minimising it lowers `log pi` at full strength while `pi > pi_ref`, then ever more gently: the push fades as the
    response's probability falls below the reference's, so it never diverges (an unlikelihood term `+log pi` would).
    `f >= 0`, continuous with a continuous gradient at 0, and no overflow (the exponent is never positive). One
    branch per side: at `h = 0` exactly (a policy still equal to its reference) the gradient is 1, not 1 twice.
    """
    return torch.where(logratios > 0, 1 + logratios, torch.exp(logratios.clamp(max=0)))


def topr_weights(advantages: torch.Tensor, temperature: float, max_weight: float) -> torch.Tensor:
    """The signed weight of each response in `topr_loss`: UPO's `min(exp(A / T), w_max)` where `A >= 0`, and
    `-(1 - exp(A / T))`, in (-1, 0), where `A < 0`: the shortfall of its AWR weight below the neutral 1, as a push down.
    `A` must be detached. Shapes: (M,) -> (M,)"""
    push_up = advantage_weights(advantages.clamp(min=0), temperature, max_weight)
    push_down = torch.expm1(advantages.clamp(max=0) / temperature)  # exp(A/T) - 1 = -(1 - exp(A/T))
    return torch.where(advantages >= 0, push_up, push_down)


def topr_loss(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
    max_weight: float,
    num_tokens=None,
    lengths: torch.Tensor | None = None,
    normalization: str = "per_sequence",
) -> torch.Tensor:
    """Tapered negatives (after TOPR, Le Roux et al. 2025, "Tapered Off-Policy REINFORCE"): UPO's
    advantage-weighted likelihood where `A >= 0`, a ratio-tapered push down where `A < 0`.

    `L = (sum_{A >= 0} -w(A) logp + sum_{A < 0} (1 - exp(A / T)) f(logp - ref_logp)) / D`, `w = min(exp(A/T), w_max)`,
    `f = tapered_push_down` (gradient `min(pi/pi_ref, 1) * grad log pi`, TOPR's truncated importance weight on
    negatives with the reference as behaviour policy), `D` as in `advantage_weighted_nll`. TOPR weighs both sides by
    the reward itself; here the positive side keeps UPO's weights, as the designer term does.
    Intuition: responses better than the value are imitated as UPO does; worse ones are pushed below the reference,
    and the push fades once they are, so it cannot diverge the way unlikelihood of a whole sequence does.

    Fixed point: it does NOT keep UPO's target. Over responses drawn from `pi_ref` its optimum is
    `pi proportional to pi_ref * w(A) * 1[A >= 0]`: every response below the value is driven to probability 0
    (the loss of a negative is linear in `pi` below the reference, so nothing holds it up), and the rest are tilted
    by their (capped) AWR weights. With a value head at an upper expectile, more than half of the responses are
    negatives. On one pair it does not settle at a ratio: the positive response's log-prob rises towards 0 (no
    log-prob passes it) and the negative's falls without end (its loss tends to 0).
    Bounds: `>= 0` for log-probs `<= 0`; the negatives' part grows like `h` for `h > 0` and tends to 0 as `h -> -inf`.

    Args:
        logps: the policy's summed log-probs. Shape: (M,)
        ref_logps: the reference's. Shape: (M,)
        advantages: `r_aux - V(x)`, detached. Shape: (M,)
        mask: which responses have a designer reward. Shape: (M,)
        num_tokens: `D`, when it is not this batch's own.
        lengths: token counts, needed for "per_token". Shape: (M,)
    Returns:
        Scalar.
    """
    weights = topr_weights(advantages, temperature, max_weight)
    push_down = -weights * tapered_push_down(logps - ref_logps)
    per_response = torch.where(advantages >= 0, -weights * logps, push_down)
    denominator = aux_denominator(lengths, mask.to(logps.dtype), num_tokens, normalization)
    return torch.where(mask, per_response, torch.zeros_like(per_response)).sum() / denominator


def explained_variance_sums(values: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What the explained variance of `targets` by `values` needs, as sums that add up over batches and processes.

    Returns `(count, sum t, sum t^2, sum (t - v)^2)` over the masked entries; `explained_variance` turns it into
    `1 - SSE / SST`. Shapes: (M,), (M,), (M,) -> (4,)
    """
    maskf = mask.to(torch.float64)
    t = torch.where(mask, targets, torch.zeros_like(targets)).detach().double()
    residual = (t - values.detach().double()) * maskf
    return torch.stack([maskf.sum(), t.sum(), (t**2).sum(), (residual**2).sum()])


def explained_variance(sums: torch.Tensor) -> float:
    """`1 - SSE / SST` from `explained_variance_sums` (summed): 1 is a perfect fit, 0 is no better than the mean of
    the targets, below 0 worse (an expectile above the mean lands there). NaN with fewer than two targets."""
    count, total, squares, sse = (float(x) for x in sums)
    sst = squares - total**2 / count if count > 1 else 0.0
    return 1.0 - sse / sst if sst > 0 else float("nan")


PAIR_AUX_LOSSES = ("infonca", "exo", "nca")


def designer_pair_loss(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    rewards: torch.Tensor,
    *,
    aux_loss: str,
    temperature: float,
    num_pairs=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A pair form of the designer term (`infonca_pair_loss`, `exo_pair_loss` or `nca_pair_loss`), averaged over the
    pairs whose two responses both have a designer reward.

    Each pair's loss is of order 1 whatever the responses' lengths (it sees only their summed log-ratios, as DPO
    does), so `aux_normalization` does not apply.

    Args:
        logps, ref_logps: policy and reference summed log-probs, chosen then rejected. Shape: (2B,)
        rewards: `r_aux`, chosen then rejected, `NaN` where no objective applies. Shape: (2B,)
        num_pairs: the denominator, when it is not this batch's own count of such pairs.
    Returns:
        `(L_aux, each response's target probability within its pair, 0 where its pair is left out)`. Shapes: (), (2B,)
    """
    target_logits, pair_mask = designer_pair_logits(rewards, temperature)
    chosen_logratios, rejected_logratios = (logps - ref_logps).chunk(2)
    if aux_loss == "infonca":
        per_pair = infonca_pair_loss(chosen_logratios - rejected_logratios, target_logits)
    elif aux_loss == "exo":
        per_pair = exo_pair_loss(chosen_logratios - rejected_logratios, target_logits)
    elif aux_loss == "nca":
        per_pair = nca_pair_loss(chosen_logratios, rejected_logratios, target_logits)
    else:
        raise ValueError(f"Unknown pair aux_loss {aux_loss!r}; expected one of {PAIR_AUX_LOSSES}.")
    denominator = pair_mask.sum().clamp(min=1) if num_pairs is None else num_pairs
    aux = torch.where(pair_mask, per_pair, torch.zeros_like(per_pair)).sum() / denominator
    q = torch.sigmoid(target_logits)
    targets = torch.where(pair_mask.repeat(2), torch.cat([q, 1 - q]), torch.zeros_like(rewards))
    return aux, targets


@dataclass
class DesignerOutput:
    aux_loss: torch.Tensor  # scalar, L_aux (before alpha)
    value_loss: torch.Tensor  # scalar, L_value (0 unless value_baseline == "value_head")
    advantages: torch.Tensor  # (M,) detached, NaN-free (0 where not applicable)
    # (M,) each response's weight: AWR's, topr's signed one, or for a pair form its target probability in its pair
    weights: torch.Tensor
    mask: torch.Tensor  # (M,) bool


def baseline_values(
    rewards: torch.Tensor, mask: torch.Tensor, value_baseline: str, values: torch.Tensor | None = None
) -> torch.Tensor:
    """The baseline `V(x)` of each response, for the three choices of `value_baseline`.

    Args:
        rewards: `r_aux` of chosen then rejected. Shape: (2B,)
        mask: where `rewards` is defined. Shape: (2B,)
        value_baseline: "value_head" (use `values`), "pair_mean" (mean of the pair's defined rewards),
            "batch_mean" (mean of the batch's defined rewards).
        values: the value head's prediction per prompt, needed for "value_head". Shape: (B,)
    Returns:
        Shape: (2B,)
    """
    if value_baseline == "value_head":
        return values.repeat(2)
    filled = torch.where(mask, rewards, torch.zeros_like(rewards))
    if value_baseline == "batch_mean":
        return (filled.sum() / mask.sum().clamp(min=1)).expand_as(rewards)
    if value_baseline == "pair_mean":
        pair_sum = sum(filled.chunk(2))
        pair_count = sum(mask.to(rewards.dtype).chunk(2)).clamp(min=1)
        return (pair_sum / pair_count).repeat(2)
    raise ValueError(f"Unknown value_baseline {value_baseline!r}; expected one of {VALUE_BASELINES}.")


def designer_loss(
    policy_logps: torch.Tensor,
    lengths: torch.Tensor,
    rewards: torch.Tensor,
    *,
    value_baseline: str,
    values: torch.Tensor | None = None,
    expectile_tau: float,
    aw_temperature: float,
    aw_max_weight: float,
    num_tokens=None,
    normalization: str,
    aux_loss: str = "awr",
    ref_logps: torch.Tensor | None = None,
    num_pairs=None,
) -> DesignerOutput:
    """UPO's designer term: advantage-weighted likelihood on both responses of every pair, plus the value loss.

    `A = stopgrad(r_aux - V(x))`, `w = min(exp(A / T), w_max)`, `L_aux = -sum w * logp / D` (`D` the batch's
    response tokens or its responses, by `normalization`), and with a value head `L_value = expectile(V(x), r_aux)`.
    `L_aux` reaches only the policy log-probs; `L_value` reaches only the value head.

    `aux_loss` picks `L_aux`: "awr" (the above, the paper's term), or a signed form with the same target
    `pi_ref * exp(r_aux / T)`: "infonca", "exo", "nca" (`designer_pair_loss`, which need no `V(x)`) or "topr"
    (`topr_loss`); these need `ref_logps`. `L_value` and the advantages are the same for every form.

    Args:
        policy_logps: summed log-probs, chosen then rejected. Shape: (2B,)
        lengths: response token counts, chosen then rejected. Shape: (2B,)
        rewards: `r_aux`, chosen then rejected, `NaN` where no objective applies. Shape: (2B,)
        values: value head output per prompt (required for "value_head"). Shape: (B,)
        num_tokens: denominator of `L_aux` when it is not this batch's own (see `step_token_counts`).
        normalization: "per_token" or "per_sequence" (`advantage_weighted_nll`; not used by the pair forms).
        ref_logps: reference summed log-probs, chosen then rejected (required by the signed forms). Shape: (2B,)
        num_pairs: denominator of a pair form when it is not this batch's own count of pairs with both rewards.
    The options (`value_baseline`, `expectile_tau`, `aw_temperature`, `aw_max_weight`, `normalization`) have no
    default here: `UPOConfig`'s are the only ones.
    """
    mask = ~torch.isnan(rewards)
    rewards = torch.where(mask, rewards, torch.zeros_like(rewards))
    baseline = baseline_values(rewards, mask, value_baseline, values)
    advantages = torch.where(mask, rewards - baseline.detach(), torch.zeros_like(rewards))
    if aux_loss != "awr":
        if aux_loss not in AUX_LOSSES:
            raise ValueError(f"Unknown aux_loss {aux_loss!r}; expected one of {AUX_LOSSES}.")
        if ref_logps is None:
            raise ValueError(f"aux_loss {aux_loss!r} needs the reference log-probs (`ref_logps`).")
    if aux_loss == "awr":
        weights = advantage_weights(advantages, aw_temperature, aw_max_weight)
        aux = advantage_weighted_nll(policy_logps, lengths, weights, mask, num_tokens, normalization)
    elif aux_loss == "topr":
        weights = topr_weights(advantages, aw_temperature, aw_max_weight)
        aux = topr_loss(policy_logps, ref_logps, advantages, mask, aw_temperature, aw_max_weight, num_tokens,
                        lengths, normalization)
    else:
        # the NaN-filled rewards would make a pair with one missing side look like a pair with reward 0 there
        pair_rewards = torch.where(mask, rewards, torch.full_like(rewards, float("nan")))
        aux, weights = designer_pair_loss(policy_logps, ref_logps, pair_rewards, aux_loss=aux_loss,
                                          temperature=aw_temperature, num_pairs=num_pairs)
    if value_baseline == "value_head":
        value = expectile_loss(baseline, rewards, expectile_tau, mask)
    else:
        value = policy_logps.new_zeros(())
    return DesignerOutput(aux_loss=aux, value_loss=value, advantages=advantages, weights=weights, mask=mask)


def step_token_counts(batches: list[dict], num_processes: int) -> torch.Tensor:
    """Token counts that make per-token averages exact over a whole optimizer step.

    A step sums the gradients of `G` micro-batches (each loss divided by `G`) on `P` processes (averaged), so a
    term that divides by *its own* micro-batch's tokens weighs a token of a short batch more than one of a long
    batch. Dividing each micro-batch by `total_tokens / (G * P)` instead gives every token of the step the same
    weight, exactly as one big batch would. The caller sums the returned counts over processes.

    Args:
        batches: the step's micro-batches, as built by `PreferenceCollator`.
    Returns:
        `(chosen tokens, all response tokens, tokens of responses with a designer reward, responses with a designer
        reward, pairs whose two responses both have one)`, each already divided by `G * P`. Shape: (5,)
    """
    counts = torch.zeros(5, dtype=torch.float64)
    for batch in batches:
        n = 2 * len(batch["prompt_last_index"])
        lengths = torch.bincount(batch["response_index"].cpu(), minlength=n).to(torch.float64)
        counts[0] += lengths[: n // 2].sum()
        counts[1] += lengths.sum()
        if "designer_rewards" in batch:
            rewarded = ~torch.isnan(batch["designer_rewards"].cpu())
            counts[2] += (lengths * rewarded).sum()
            counts[3] += rewarded.sum()
            counts[4] += (rewarded[: n // 2] & rewarded[n // 2 :]).sum()
    return counts / (len(batches) * num_processes)
