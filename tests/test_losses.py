"""Every loss against a value computed by hand (with `math`, not with the code under test)."""

import math

import pytest
import torch

from upo.losses import (
    advantage_weighted_nll,
    advantage_weights,
    combine_designer_rewards,
    designer_loss,
    designer_pair_logits,
    designer_pair_loss,
    designer_statistics,
    exo_pair_loss,
    expectile_loss,
    explained_variance,
    explained_variance_sums,
    infonca_pair_loss,
    log1mexp,
    nca_pair_loss,
    preference_loss,
    sigmoid_loss,
    step_token_counts,
    tapered_push_down,
    topr_loss,
)

NAN = float("nan")


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def softplus(x):
    return math.log1p(math.exp(x))


# One pair: chosen log-ratio +0.5, rejected log-ratio -0.5, so the DPO logit is 1.0.
PAIR = dict(
    chosen_logps=t(-1.0), rejected_logps=t(-2.0), ref_chosen_logps=t(-1.5), ref_rejected_logps=t(-1.5),
    chosen_lengths=t(2.0), rejected_lengths=t(4.0),
)


def pref(loss_type, **kwargs):
    return preference_loss(**PAIR, beta=0.1, loss_type=loss_type, **kwargs)


def test_sigmoid_is_dpo():
    assert pref(["sigmoid"]).loss.item() == pytest.approx(softplus(-0.1), abs=1e-12)  # -log sigmoid(0.1)


def test_sigmoid_label_smoothing():
    expected = 0.9 * softplus(-0.1) + 0.1 * softplus(0.1)
    assert pref(["sigmoid"], label_smoothing=0.1).loss.item() == pytest.approx(expected, abs=1e-12)


def test_ipo_averages_per_token():
    h = 0.5 / 2 - (-0.5) / 4  # 0.375
    assert pref(["ipo"]).loss.item() == pytest.approx((h - 5.0) ** 2, abs=1e-12)  # 21.390625


def test_hinge():
    assert pref(["hinge"]).loss.item() == pytest.approx(0.9, abs=1e-12)


def test_sft_is_token_mean_nll_of_chosen():
    out = preference_loss(t(-1.0, -3.0), t(0.0, 0.0), t(0.0, 0.0), t(0.0, 0.0), t(2.0, 2.0), t(1.0, 1.0),
                          beta=0.1, loss_type=["sft"])
    assert out.loss.item() == pytest.approx(1.0, abs=1e-12)


def test_combined_losses_use_weights():
    out = pref(["sigmoid", "hinge"], loss_weights=[0.8, 0.2])
    assert out.loss.item() == pytest.approx(0.8 * softplus(-0.1) + 0.2 * 0.9, abs=1e-12)
    assert set(out.components) == {"sigmoid", "hinge"}


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


# TRL's other loss types and the reference-free methods, on PAIR: h_c = +0.5, h_r = -0.5, h = 1.0, beta = 0.1, lengths
# 2 and 4 (tests/test_trl_parity.py checks each against TRL's own code on a real batch).
BY_HAND = {
    "robust": (0.9 * softplus(-0.1) - 0.1 * softplus(0.1)) / 0.8,  # label_smoothing 0.1
    "exo_pair": (sigmoid(0.1) * (math.log(sigmoid(0.1)) - math.log(1 - 1e-3))
                 + sigmoid(-0.1) * (math.log(sigmoid(-0.1)) - math.log(1e-3))),  # label_smoothing 1e-3
    "nca_pair": softplus(-0.05) + 0.5 * softplus(0.05) + 0.5 * softplus(-0.05),
    "bco_pair": 2 * softplus(-0.05),
    "sppo_hard": (0.5 - 5) ** 2 + (-0.5 + 5) ** 2,  # 40.5
    "apo_zero": 1 - sigmoid(0.05) + sigmoid(-0.05),
    "apo_down": sigmoid(0.05) + 1 - sigmoid(0.1),
    "discopop": (1 - sigmoid(2.0)) * softplus(-0.1) + sigmoid(2.0) * math.exp(-0.1),  # tau 0.05: x / tau = 2
    "sigmoid_norm": softplus(-0.1 * (0.5 / 2 + 0.5 / 4)),
    "simpo": softplus(0.5),  # average log-probs -1/2 and -2/4: margin 0, so -log sigmoid(-gamma) with gamma 0.5
    "cpo": softplus(-0.1) + 0.5,  # -log sigmoid(beta (logp_c - logp_r)) + 1.0 x NLL (1 nat over 2 tokens)
    "aot": softplus(-0.1),  # one pair: its sorted margins are its own
    "aot_unpaired": softplus(-0.1),
}


@pytest.mark.parametrize("loss_type", list(BY_HAND))
def test_each_trl_loss_type_and_reference_free_method_by_hand(loss_type):
    smoothing = {"robust": 0.1, "exo_pair": 1e-3}.get(loss_type, 0.0)
    assert pref([loss_type], label_smoothing=smoothing).loss.item() == pytest.approx(BY_HAND[loss_type], abs=1e-12)


def test_aot_matches_sorted_margins_not_pairs():
    # policy margins (1, -2) sorted (-2, 1); reference margins (0, 4) sorted (0, 4): deltas -2 and -3
    paired = preference_loss(t(-1.0, -3.0), t(-2.0, -1.0), t(0.0, 0.0), t(0.0, -4.0), t(1.0, 1.0), t(1.0, 1.0),
                             beta=0.1, loss_type=["aot"])
    assert paired.loss.item() == pytest.approx((softplus(0.2) + softplus(0.3)) / 2, abs=1e-12)
    # chosen log-ratios (-1, -3) sorted (-3, -1); rejected (-2, 3) sorted (-2, 3): deltas -1 and -4
    unpaired = preference_loss(t(-1.0, -3.0), t(-2.0, -1.0), t(0.0, 0.0), t(0.0, -4.0), t(1.0, 1.0), t(1.0, 1.0),
                               beta=0.1, loss_type=["aot_unpaired"])
    assert unpaired.loss.item() == pytest.approx((softplus(0.1) + softplus(0.4)) / 2, abs=1e-12)


def test_orpo_by_hand():
    # average log-probs -1/4 and -2/2; odds(y) = P / (1 - P) with P = exp(average log-prob)
    log_odds = (-0.25 + 1.0) - (math.log(1 - math.exp(-0.25)) - math.log(1 - math.exp(-1.0)))
    out = preference_loss(t(-1.0), t(-2.0), t(0.0), t(0.0), t(4.0), t(2.0), beta=0.1, loss_type=["orpo"])
    assert out.loss.item() == pytest.approx(0.25 + 0.1 * softplus(-log_odds), abs=1e-12)  # NLL 1/4 + lambda * OR


def test_reference_free_methods_ignore_the_reference():
    for loss_type in (["simpo"], ["cpo"], ["orpo"]):
        a = preference_loss(**{**PAIR, "ref_chosen_logps": t(5.0)}, beta=0.1, loss_type=loss_type).loss
        assert a.item() == pref(loss_type).loss.item()


def test_cpo_simpo_is_simpo_plus_weighted_sft():
    cpo_simpo = pref(["simpo", "sft"], loss_weights=[1.0, 0.7]).loss.item()
    assert cpo_simpo == pytest.approx(softplus(0.5) + 0.7 * 0.5, abs=1e-12)


def test_log1mexp_is_exact_near_zero_and_far_from_it():
    for x in (-1e-8, -0.1, -0.69, -0.7, -5.0, -40.0):
        assert log1mexp(t(x)).item() == pytest.approx(math.log(-math.expm1(x)), rel=1e-12)


def test_per_pair_weights_leave_the_nll_of_cpo_and_orpo_unweighted():
    weights = t(0.5)
    for loss_type in ("cpo", "orpo"):
        nll = pref(["sft"]).loss.item()
        unweighted = pref([loss_type]).loss.item() - nll
        assert pref([loss_type], pair_weights=weights).loss.item() == pytest.approx(0.5 * unweighted + nll, abs=1e-12)


def test_modpo_shifts_the_logit_by_the_designer_margin():
    out = pref(["modpo"], designer_margin=t(2.0), modpo_weight=0.5)
    assert out.loss.item() == pytest.approx(softplus(1.8), abs=1e-12)  # -log sigmoid((0.1 - 0.5 * 2) / 0.5)
    dpo = pref(["modpo"], designer_margin=t(2.0), modpo_weight=0.0)
    assert dpo.loss.item() == pytest.approx(softplus(-0.1), abs=1e-12)


def test_pair_weights_scale_each_pair():
    assert pref(["sigmoid"], pair_weights=t(0.5)).loss.item() == pytest.approx(0.5 * softplus(-0.1), abs=1e-12)


def test_designer_statistics_ignore_not_applicable():
    mean, std = designer_statistics(t(1.0, NAN, 3.0, 2.0, 5.0, 4.0).reshape(3, 2))
    assert mean.tolist() == pytest.approx([3.0, 3.0])
    assert std.tolist() == pytest.approx([math.sqrt(8 / 3), 1.0])
    _, constant_std = designer_statistics(t(2.0, 2.0).reshape(2, 1))
    assert constant_std.tolist() == [1.0]  # a constant objective standardises to 0, not to NaN


def test_combine_designer_rewards_standardises_and_weights():
    scores = t(1.0, NAN, 3.0, 2.0, 5.0, 4.0, NAN, NAN).reshape(4, 2)
    r = combine_designer_rewards(scores, t(1.0, 0.5), t(3.0, 3.0), t(math.sqrt(8 / 3), 1.0))
    z = 2 / math.sqrt(8 / 3)
    assert r[:3].tolist() == pytest.approx([-z, -0.5, z + 0.5])
    assert math.isnan(r[3].item())  # no objective applies


def test_expectile_loss_is_asymmetric():
    values, targets = t(0.0, 0.0), t(1.0, -1.0)
    assert expectile_loss(values, targets, 0.7, torch.tensor([True, True])).item() == pytest.approx(0.5)
    assert expectile_loss(values, targets, 0.7, torch.tensor([True, False])).item() == pytest.approx(0.7)
    assert expectile_loss(values, targets, 0.7, torch.tensor([False, False])).item() == 0.0


def test_advantage_weights_are_capped():
    w = advantage_weights(t(0.0, math.log(2.0), 10.0), temperature=1.0, max_weight=20.0)
    assert w.tolist() == pytest.approx([1.0, 2.0, 20.0])
    assert advantage_weights(t(2.0), 2.0, 20.0).item() == pytest.approx(math.e)


def test_advantage_weighted_nll_normalises_by_batch_tokens():
    mask = torch.tensor([True, True, False])
    loss = advantage_weighted_nll(t(-2.0, -4.0, -9.0), t(2.0, 4.0, 3.0), t(1.0, 2.0, 5.0), mask,
                                  normalization="per_token")
    assert loss.item() == pytest.approx(10 / 6)


def test_advantage_weighted_nll_per_sequence_averages_summed_log_probs_over_responses():
    # Same inputs as above: -(1 * -2 + 2 * -4) / 2 responses (the third has no designer reward).
    mask = torch.tensor([True, True, False])
    loss = advantage_weighted_nll(t(-2.0, -4.0, -9.0), t(2.0, 4.0, 3.0), t(1.0, 2.0, 5.0), mask,
                                  normalization="per_sequence")
    assert loss.item() == pytest.approx(10 / 2)
    # the step's count replaces the batch's own, whichever normalisation
    assert advantage_weighted_nll(t(-2.0), t(2.0), t(1.0), torch.tensor([True]), 4.0, "per_sequence").item() == 0.5


# designer_loss takes UPOConfig's options without defaults of its own; the hand computations use temperature 1.
AT_T1 = dict(expectile_tau=0.7, aw_temperature=1.0, aw_max_weight=20.0)


def test_designer_loss_per_sequence_is_per_token_times_the_mean_length():
    kwargs = dict(value_baseline="pair_mean", **AT_T1)
    per_token = designer_loss(t(-2.0, -4.0), t(2.0, 4.0), t(1.0, -1.0), normalization="per_token", **kwargs)
    per_token = per_token.aux_loss.item()
    per_sequence = designer_loss(t(-2.0, -4.0), t(2.0, 4.0), t(1.0, -1.0), normalization="per_sequence", **kwargs)
    assert per_token == pytest.approx((2 * math.e + 4 / math.e) / 6)
    assert per_sequence.aux_loss.item() == pytest.approx((2 * math.e + 4 / math.e) / 2)


def test_step_counts_include_the_responses_with_a_designer_reward():
    batch = {"prompt_last_index": torch.tensor([0, 0]), "response_index": torch.tensor([0, 0, 1, 2, 2, 2, 3]),
             "designer_rewards": t(1.0, NAN, 0.5, 2.0)}
    # chosen tokens 2 + 1, all 7, rewarded tokens 2 + 3 + 1, rewarded responses 3, pairs with both rewarded 1 (the
    # first: chosen 1.0, rejected 0.5); one micro-batch, one process
    assert step_token_counts([batch], 1).tolist() == [3.0, 7.0, 6.0, 3.0, 1.0]


def test_explained_variance_by_hand():
    targets, values = t(1.0, 2.0, 3.0, 100.0), t(1.0, 2.0, 2.0, 0.0)
    sums = explained_variance_sums(values, targets, torch.tensor([True, True, True, False]))
    assert sums.tolist() == pytest.approx([3.0, 6.0, 14.0, 1.0])
    assert explained_variance(sums) == pytest.approx(1 - 1 / 2)  # SST = 14 - 36 / 3 = 2
    assert explained_variance(sums + sums) == pytest.approx(1 - 2 / 4)  # sums add up over batches
    mean_only = explained_variance_sums(t(2.0, 2.0, 2.0), t(1.0, 2.0, 3.0), torch.tensor([True] * 3))
    assert explained_variance(mean_only) == pytest.approx(0.0)
    assert math.isnan(explained_variance(explained_variance_sums(t(0.0), t(1.0), torch.tensor([True]))))


def test_designer_loss_pair_mean_by_hand():
    # One pair: r_aux chosen 1, rejected -1 -> baseline 0 -> advantages (1, -1) -> weights (e, 1/e).
    out = designer_loss(t(-2.0, -4.0), t(2.0, 2.0), t(1.0, -1.0), value_baseline="pair_mean",
                        normalization="per_token", **AT_T1)
    assert out.aux_loss.item() == pytest.approx((2 * math.e + 4 / math.e) / 4)
    assert out.value_loss.item() == 0.0
    assert out.advantages.tolist() == pytest.approx([1.0, -1.0])


def test_designer_loss_batch_mean_and_not_applicable():
    # Two pairs, chosen (2, NaN), rejected (0, 1): batch mean of defined rewards = 1.
    out = designer_loss(t(-1.0, -1.0, -1.0, -1.0), t(1.0, 1.0, 1.0, 1.0), t(2.0, NAN, 0.0, 1.0),
                        value_baseline="batch_mean", normalization="per_token", **AT_T1)
    assert out.mask.tolist() == [True, False, True, True]
    assert out.advantages.tolist() == pytest.approx([1.0, 0.0, -1.0, 0.0])
    assert out.aux_loss.item() == pytest.approx((math.e + 1 / math.e + 1) / 3)


def test_designer_loss_value_head_by_hand():
    values = t(0.5).requires_grad_()
    out = designer_loss(t(-2.0, -4.0), t(2.0, 2.0), t(1.0, -1.0), value_baseline="value_head", values=values,
                        expectile_tau=0.7, aw_temperature=2.0, aw_max_weight=20.0, normalization="per_token")
    # advantages (0.5, -1.5), weights exp(A / 2); u = (0.5, -1.5): value loss (0.7 * 0.25 + 0.3 * 2.25) / 2
    assert out.advantages.tolist() == pytest.approx([0.5, -1.5])
    assert out.aux_loss.item() == pytest.approx((2 * math.exp(0.25) + 4 * math.exp(-0.75)) / 4)
    assert out.value_loss.item() == pytest.approx((0.7 * 0.25 + 0.3 * 2.25) / 2)


def test_designer_gradients_reach_only_their_own_inputs():
    logps = t(-2.0, -4.0).requires_grad_()
    values = t(0.5).requires_grad_()
    out = designer_loss(logps, t(2.0, 2.0), t(1.0, -1.0), value_baseline="value_head", values=values,
                        normalization="per_token", **AT_T1)
    (aux_logps, aux_values) = torch.autograd.grad(out.aux_loss, (logps, values), allow_unused=True)
    assert aux_values is None and aux_logps.abs().sum() > 0  # the advantage is detached
    (value_logps, value_values) = torch.autograd.grad(out.value_loss, (logps, values), allow_unused=True)
    assert value_logps is None and value_values.abs().sum() > 0
    # d L_aux / d logp_i = -w_i / sum(n)
    w = torch.exp(torch.tensor([0.5, -1.5], dtype=torch.float64))
    assert aux_logps.tolist() == pytest.approx((-w / 4).tolist())


def test_dpo_gradient_by_hand():
    chosen = t(-1.0).requires_grad_()
    out = preference_loss(chosen, t(-2.0), t(-1.5), t(-1.5), t(1.0), t(1.0), beta=0.1)
    (grad,) = torch.autograd.grad(out.loss, chosen)
    sigma = 1 / (1 + math.exp(-0.1))
    assert grad.item() == pytest.approx(-0.1 * (1 - sigma))


# --- Signed designer terms ------------------------------------------------------------------------------------------
# One pair throughout: r_aux chosen 1, rejected -1, T = 2, so the target logit z = (1 - (-1)) / 2 = 1 and the target's
# probability of the chosen reply q = sigmoid(1) = 0.7310586; log q = -softplus(-1) = -0.3132617,
# log(1 - q) = -softplus(1) = -1.3132617.
Q = 1 / (1 + math.exp(-1.0))
LOG_Q, LOG_1MQ = -softplus(-1.0), -softplus(1.0)
SIGNED = ("infonca", "exo", "nca", "topr")
PAIR_FORMS = {
    "infonca": lambda hc, hr, z: infonca_pair_loss(hc - hr, z),
    "exo": lambda hc, hr, z: exo_pair_loss(hc - hr, z),
    "nca": nca_pair_loss,
}


def signed(aux_loss, logps, ref_logps, rewards, **kwargs):
    kwargs = {**AT_T1, "value_baseline": "pair_mean", "aw_temperature": 2.0, "normalization": "per_sequence", **kwargs}
    return designer_loss(logps, torch.ones_like(logps), rewards, aux_loss=aux_loss, ref_logps=ref_logps, **kwargs)


def test_pair_target_logits_leave_out_pairs_without_both_rewards():
    z, mask = designer_pair_logits(t(1.0, NAN, 3.0, -1.0, 2.0, NAN), temperature=2.0)
    assert z.tolist() == [1.0, 0.0, 0.0] and mask.tolist() == [True, False, False]


def test_infonca_by_hand():
    # Policy = reference (d = 0), so p = 1/2: KL(q || p) = q log 2q + (1 - q) log 2(1 - q) = log 2 + q log q +
    # (1 - q) log(1 - q) = 0.6931472 - 0.5822032 = 0.1109441.
    expected = math.log(2) + Q * LOG_Q + (1 - Q) * LOG_1MQ
    assert expected == pytest.approx(0.1109441, abs=1e-7)
    assert infonca_pair_loss(t(0.0), t(1.0)).item() == pytest.approx(expected, abs=1e-12)
    # InfoNCA's cross-entropy is cDPO at beta = 1 with label_smoothing 1 - q; the KL form drops the entropy H(q).
    entropy = -(Q * LOG_Q + (1 - Q) * LOG_1MQ)
    d = t(0.3, -2.0)
    cdpo = sigmoid_loss(d, beta=1.0, label_smoothing=1 - Q)
    assert (infonca_pair_loss(d, t(1.0, 1.0)) + entropy).tolist() == pytest.approx(cdpo.tolist(), abs=1e-12)
    assert infonca_pair_loss(t(1.0), t(1.0)).item() == pytest.approx(0.0, abs=1e-15)  # d = z: the fixed point


def test_exo_by_hand():
    # d = 0, p = 1/2: KL(p || q) = 1/2 log(1/(2q)) + 1/2 log(1/(2(1 - q))) = -log 2 - (log q + log(1 - q)) / 2
    # = -0.6931472 + 0.8132617 = 0.1201145.
    expected = -math.log(2) - (LOG_Q + LOG_1MQ) / 2
    assert expected == pytest.approx(0.1201145, abs=1e-7)
    assert exo_pair_loss(t(0.0), t(1.0)).item() == pytest.approx(expected, abs=1e-12)
    assert exo_pair_loss(t(1.0), t(1.0)).item() == pytest.approx(0.0, abs=1e-15)


def test_nca_by_hand():
    # h_c = 1, h_r = -1: -q log sigmoid(1) - (1 - q) log sigmoid(-1) - (log sigmoid(-1) + log sigmoid(1)) / 2
    # = 0.7310586 * 0.3132617 + 0.2689414 * 1.3132617 + (1.3132617 + 0.3132617) / 2 = 1.3954648.
    expected = -Q * LOG_Q - (1 - Q) * LOG_1MQ - (LOG_1MQ + LOG_Q) / 2
    assert expected == pytest.approx(1.3954648, abs=1e-7)
    assert nca_pair_loss(t(1.0), t(-1.0), t(1.0)).item() == pytest.approx(expected, abs=1e-12)
    # at the reference both log-ratios are 0 and every term is log 2, whatever q
    assert nca_pair_loss(t(0.0), t(0.0), t(1.0)).item() == pytest.approx(2 * math.log(2), abs=1e-12)


def test_topr_by_hand():
    # log-probs (-2, -4), reference (-3, -3), r_aux (1, -1), pair mean 0 -> A = (1, -1), T = 1, two responses.
    # chosen, A > 0: UPO's weight e, -e * (-2) = 2e. rejected, A < 0: weight 1 - e^-1, h = -4 + 3 = -1 below the
    # reference, f(h) = e^-1: (1 - e^-1) e^-1 = 0.2325442. Mean (2e + 0.2325442) / 2 = 2.8345539.
    mask = torch.tensor([True, True])
    loss = topr_loss(t(-2.0, -4.0), t(-3.0, -3.0), t(1.0, -1.0), mask, temperature=1.0, max_weight=20.0)
    assert loss.item() == pytest.approx((2 * math.e + (1 - 1 / math.e) / math.e) / 2, abs=1e-12)
    assert loss.item() == pytest.approx(2.8345539, abs=1e-7)
    # above the reference (h = +1) the push is linear: f = 1 + 1 = 2; the cap applies to the positive side
    loss = topr_loss(t(-2.0, -2.0), t(-3.0, -3.0), t(10.0, -1.0), mask, temperature=1.0, max_weight=20.0)
    assert loss.item() == pytest.approx((20 * 2 + (1 - 1 / math.e) * 2) / 2, abs=1e-12)
    # per token: the same sum over the responses' 2 + 4 tokens
    loss = topr_loss(t(-2.0, -4.0), t(-3.0, -3.0), t(1.0, -1.0), mask, 1.0, 20.0, lengths=t(2.0, 4.0),
                     normalization="per_token")
    assert loss.item() == pytest.approx((2 * math.e + (1 - 1 / math.e) / math.e) / 6, abs=1e-12)


def test_tapered_push_down_is_topr_truncated_ratio():
    h = t(-3.0, -0.5, 0.0, 2.0).requires_grad_()
    (grad,) = torch.autograd.grad(tapered_push_down(h).sum(), h)
    assert grad.tolist() == pytest.approx([math.exp(-3.0), math.exp(-0.5), 1.0, 1.0])  # min(pi/pi_ref, 1)
    assert tapered_push_down(h).tolist() == pytest.approx([math.exp(-3.0), math.exp(-0.5), 1.0, 3.0])


def test_designer_loss_dispatches_to_each_form_by_hand():
    # chosen log-ratio 1, rejected -1 (log-probs -1, -3 against -2, -2); r_aux (1, -1), T = 2: z = 1.
    logps, ref = t(-1.0, -3.0), t(-2.0, -2.0)
    expected = {
        "infonca": Q * (LOG_Q - (-softplus(-2.0))) + (1 - Q) * (LOG_1MQ - (-softplus(2.0))),  # d = 2
        # p = sigmoid(2): p (log p - log q) + (1 - p) (log(1 - p) - log(1 - q)) = 0.8807971 * 0.1863337
        # + 0.1192029 * (-0.8136663) = 0.1641222 - 0.0969914 = 0.0671308
        "exo": (1 / (1 + math.exp(-2.0))) * (-softplus(-2.0) - LOG_Q)
        + (1 / (1 + math.exp(2.0))) * (-softplus(2.0) - LOG_1MQ),
        "nca": -Q * LOG_Q - (1 - Q) * LOG_1MQ - (LOG_1MQ + LOG_Q) / 2,
        # A = (1, -1): e^(1/2) * 1 for the chosen, (1 - e^(-1/2)) * e^(-1) for the rejected, over 2 responses
        "topr": (math.exp(0.5) + (1 - math.exp(-0.5)) * math.exp(-1.0)) / 2,
    }
    assert expected["exo"] == pytest.approx(0.0671308, abs=1e-7)
    for aux_loss, value in expected.items():
        out = signed(aux_loss, logps, ref, t(1.0, -1.0))
        assert out.aux_loss.item() == pytest.approx(value, abs=1e-12), aux_loss
        assert out.advantages.tolist() == pytest.approx([1.0, -1.0])  # the same advantages for every form
    assert signed("infonca", logps, ref, t(1.0, -1.0)).weights.tolist() == pytest.approx([Q, 1 - Q])
    with pytest.raises(ValueError, match="aux_loss 'nca' needs the reference"):
        designer_loss(logps, t(1.0, 1.0), t(1.0, -1.0), value_baseline="pair_mean", aux_loss="nca",
                      normalization="per_sequence", **AT_T1)
    with pytest.raises(ValueError, match="Unknown aux_loss 'dpo'"):
        signed("dpo", logps, ref, t(1.0, -1.0))


def test_designer_loss_awr_by_name_is_the_default_exactly():
    logps, values = t(-2.0, -4.0, -1.5, -7.0), t(0.5, -0.2)
    kwargs = dict(value_baseline="value_head", values=values, expectile_tau=0.7, aw_temperature=0.5,
                  aw_max_weight=20.0, normalization="per_token")
    default = designer_loss(logps, t(2.0, 4.0, 1.0, 5.0), t(1.0, -1.0, NAN, 3.0), **kwargs)
    named = designer_loss(logps, t(2.0, 4.0, 1.0, 5.0), t(1.0, -1.0, NAN, 3.0), aux_loss="awr", **kwargs)
    for a, b in [(default.aux_loss, named.aux_loss), (default.value_loss, named.value_loss),
                 (default.weights, named.weights), (default.advantages, named.advantages)]:
        assert torch.equal(a, b)


@pytest.mark.parametrize("aux_loss", SIGNED)
def test_signed_forms_push_the_worse_reply_down_which_awr_never_does(aux_loss):
    # Policy = reference; the chosen reply is the worse one for the designer (r_aux -1 against 2).
    logps = t(-3.0, -5.0).requires_grad_()
    out = signed(aux_loss, logps, t(-3.0, -5.0), t(-1.0, 2.0))
    (grad,) = torch.autograd.grad(out.aux_loss, logps)
    assert grad[0] > 0 and grad[1] < 0  # gradient descent lowers the worse reply's log-prob, raises the better's
    awr_logps = t(-3.0, -5.0).requires_grad_()
    (awr_grad,) = torch.autograd.grad(signed("awr", awr_logps, None, t(-1.0, 2.0)).aux_loss, awr_logps)
    assert (awr_grad < 0).all()  # awr raises both, the worse one less


def minimise(loss_fn, params, iterations=200):
    optimizer = torch.optim.LBFGS(params, max_iter=iterations, tolerance_grad=1e-14, tolerance_change=1e-16,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    for _ in range(5):
        optimizer.step(closure)


@pytest.mark.parametrize("form", PAIR_FORMS)
def test_pair_forms_alone_reach_the_target_logit_over_free_logits(form):
    # Four pairs with free log-ratios from the reference (h = 0); r_aux chosen (1, -2, 0.5, 3), rejected
    # (-1, 1, 0.5, -3), T = 0.8: the fixed point is h_c - h_r = (r_c - r_r) / T = (2.5, -3.75, 0, 7.5).
    rewards, temperature = t(1.0, -2.0, 0.5, 3.0, -1.0, 1.0, 0.5, -3.0), 0.8
    z, _ = designer_pair_logits(rewards, temperature)
    h = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    minimise(lambda: PAIR_FORMS[form](h[:4], h[4:], z).sum(), [h])
    assert (h[:4] - h[4:]).tolist() == pytest.approx([2.5, -3.75, 0.0, 7.5], abs=1e-5)
    if form == "nca":  # NCA also pins each log-ratio: h = log(2 q), so both cannot sink together
        q = torch.sigmoid(z)
        assert h.tolist() == pytest.approx(torch.log(2 * torch.cat([q, 1 - q])).tolist(), abs=1e-5)
    else:  # the common log-ratio is free: it stays where it started, so the worse reply ends below the reference
        assert (h[:4] + h[4:]).tolist() == pytest.approx([0.0] * 4, abs=1e-6)
        assert h[4] < 0 and h[1] < 0 and h[7] < 0  # the worse reply of pairs 1, 2 and 4 (pair 3 is a tie)


def population_optimum(pair_loss, mu, r, temperature):
    """Minimise the expected pair loss over pairs drawn i.i.d. from `mu`, for a policy free over four replies."""
    theta = torch.zeros(len(mu), dtype=torch.float64, requires_grad=True)
    i, j = torch.meshgrid(torch.arange(len(mu)), torch.arange(len(mu)), indexing="ij")
    i, j = i.reshape(-1), j.reshape(-1)
    z = (r[i] - r[j]) / temperature

    def expected_loss():
        h = torch.log_softmax(theta, 0) - torch.log(mu)
        return (mu[i] * mu[j] * pair_loss(h[i], h[j], z)).sum()

    minimise(expected_loss, [theta])
    return torch.softmax(theta.detach(), 0)


def test_pair_forms_over_pairs_from_the_reference_reach_upo_target_or_not():
    mu, r, temperature = t(0.4, 0.3, 0.2, 0.1), t(-1.0, 0.0, 0.5, 2.0), 0.7
    target = mu * torch.exp(r / temperature)
    target = target / target.sum()
    for form in ("infonca", "exo"):  # the exact target pi_ref * exp(r / T) / Z
        assert population_optimum(PAIR_FORMS[form], mu, r, temperature).tolist() == pytest.approx(
            target.tolist(), abs=1e-6), form
    # NCA's absolute term changes it: pi / pi_ref = 2 E_{y' ~ pi_ref}[sigmoid((r - r') / T)], at most 2.
    win_rate = (mu[None, :] * torch.sigmoid((r[:, None] - r[None, :]) / temperature)).sum(1)
    nca = population_optimum(PAIR_FORMS["nca"], mu, r, temperature)
    assert nca.tolist() == pytest.approx((2 * mu * win_rate).tolist(), abs=1e-6)
    assert (nca / mu).max() < 2 < (target / mu).max()


def test_topr_population_optimum_drops_every_negative():
    # Replies drawn from mu with a fixed value V = 0.2: A = (-1.2, -0.2, 0.3, 1.8). TOPR's optimum is
    # pi proportional to mu * exp(A / T) on A >= 0 and 0 elsewhere, not UPO's target.
    mu, r, temperature = t(0.4, 0.3, 0.2, 0.1), t(-1.0, 0.0, 0.5, 2.0), 0.7
    advantages = r - 0.2
    theta = torch.zeros(4, dtype=torch.float64, requires_grad=True)

    def expected_loss():  # sum_k mu_k * loss of reply k alone
        logps = torch.log_softmax(theta, 0)
        alone = torch.eye(4, dtype=torch.bool)
        return sum(mu[k] * topr_loss(logps, torch.log(mu), advantages, alone[k], temperature, 20.0) for k in range(4))

    minimise(expected_loss, [theta], iterations=500)
    pi = torch.softmax(theta.detach(), 0)
    tilted = mu[2:] * torch.exp(advantages[2:] / temperature)
    assert pi[:2].sum() < 1e-4  # the two negatives, pushed towards 0
    assert (pi[2:] / pi[2:].sum()).tolist() == pytest.approx((tilted / tilted.sum()).tolist(), abs=1e-4)


@pytest.mark.parametrize("aux_loss", SIGNED)
def test_signed_forms_leave_out_what_has_no_reward(aux_loss):
    # Pair 1 has both rewards; pair 2 lacks the chosen reply's. The pair forms leave pair 2 out entirely (as its
    # only reward has nothing to be compared with); topr, per response, keeps pair 2's rejected reply as awr does.
    logps = t(-1.0, -2.0, -3.0, -1.5).requires_grad_()
    ref = t(-2.0, -2.0, -2.0, -2.0)
    out = signed(aux_loss, logps, ref, t(1.0, NAN, -1.0, 2.0), value_baseline="batch_mean")
    (grad,) = torch.autograd.grad(out.aux_loss, logps)
    assert torch.isfinite(out.aux_loss) and torch.isfinite(grad).all()
    assert grad[1] == 0
    if aux_loss in PAIR_FORMS:
        alone = signed(aux_loss, t(-1.0, -3.0), t(-2.0, -2.0), t(1.0, -1.0))
        assert out.aux_loss.item() == pytest.approx(alone.aux_loss.item(), abs=1e-12)
        assert grad[3] == 0 and out.weights[1] == 0 and out.weights[3] == 0
        # the step's count of pairs with both rewards replaces the batch's own (1 here)
        step, _ = designer_pair_loss(logps, ref, t(1.0, NAN, -1.0, 2.0), aux_loss=aux_loss, temperature=2.0,
                                     num_pairs=4.0)
        assert step.item() == pytest.approx(out.aux_loss.item() / 4, abs=1e-12)
    nothing = signed(aux_loss, logps, ref, t(NAN, NAN, NAN, NAN))
    (grad,) = torch.autograd.grad(nothing.aux_loss, logps)
    assert nothing.aux_loss.item() == 0 and (grad == 0).all()


@pytest.mark.parametrize("form", PAIR_FORMS)
def test_pair_forms_are_bounded_and_finite_at_extreme_logits_in_float32(form):
    values = (-1e4, -30.0, 0.0, 30.0, 1e4)
    hc, hr, z = (x.reshape(-1) for x in torch.meshgrid(*(torch.tensor(values),) * 2, torch.tensor([-50.0, 0.0, 50.0]),
                                                       indexing="ij"))
    hc, hr = hc.clone().requires_grad_(), hr.clone().requires_grad_()
    loss = PAIR_FORMS[form](hc, hr, z)
    grads = torch.autograd.grad(loss.sum(), (hc, hr))
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all() and all(torch.isfinite(g).all() for g in grads)
    assert (loss >= -1e-6).all()
    if form == "exo":  # bounded above too: KL(p || q) <= softplus(|z|)
        assert (loss <= torch.nn.functional.softplus(z.abs()) + 1e-4).all()


def test_topr_is_bounded_and_finite_at_extreme_logits_in_float32():
    h = torch.tensor([-1e4, -1e4, 0.0, 1e4, 1e4, -30.0], requires_grad=True)
    ref = torch.full((6,), -2e4)  # so that log pi = ref + h stays <= 0, as a log-prob does
    advantages = torch.tensor([5.0, -5.0, -1.0, 5.0, -5.0, -3.0])
    loss = topr_loss(ref + h, ref, advantages, torch.ones(6, dtype=torch.bool), temperature=0.1, max_weight=20.0)
    (grad,) = torch.autograd.grad(loss, h)
    assert torch.isfinite(loss) and loss >= 0 and torch.isfinite(grad).all()
