"""Every loss against a value computed by hand (with `math`, not with the code under test)."""

import math

import pytest
import torch

from upo.losses import (
    advantage_weighted_nll,
    advantage_weights,
    combine_designer_rewards,
    designer_loss,
    designer_statistics,
    expectile_loss,
    explained_variance,
    explained_variance_sums,
    preference_loss,
    step_token_counts,
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


def test_designer_loss_per_sequence_is_per_token_times_the_mean_length():
    kwargs = dict(value_baseline="pair_mean")
    per_token = designer_loss(t(-2.0, -4.0), t(2.0, 4.0), t(1.0, -1.0), normalization="per_token", **kwargs)
    per_token = per_token.aux_loss.item()
    per_sequence = designer_loss(t(-2.0, -4.0), t(2.0, 4.0), t(1.0, -1.0), normalization="per_sequence", **kwargs)
    assert per_token == pytest.approx((2 * math.e + 4 / math.e) / 6)
    assert per_sequence.aux_loss.item() == pytest.approx((2 * math.e + 4 / math.e) / 2)


def test_step_counts_include_the_responses_with_a_designer_reward():
    batch = {"prompt_last_index": torch.tensor([0, 0]), "response_index": torch.tensor([0, 0, 1, 2, 2, 2, 3]),
             "designer_rewards": t(1.0, NAN, 0.5, 2.0)}
    # chosen tokens 2 + 1, all 7, rewarded tokens 2 + 3 + 1, rewarded responses 3; one micro-batch, one process
    assert step_token_counts([batch], 1).tolist() == [3.0, 7.0, 6.0, 3.0]


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
                        normalization="per_token")
    assert out.aux_loss.item() == pytest.approx((2 * math.e + 4 / math.e) / 4)
    assert out.value_loss.item() == 0.0
    assert out.advantages.tolist() == pytest.approx([1.0, -1.0])


def test_designer_loss_batch_mean_and_not_applicable():
    # Two pairs, chosen (2, NaN), rejected (0, 1): batch mean of defined rewards = 1.
    out = designer_loss(t(-1.0, -1.0, -1.0, -1.0), t(1.0, 1.0, 1.0, 1.0), t(2.0, NAN, 0.0, 1.0),
                        value_baseline="batch_mean", normalization="per_token")
    assert out.mask.tolist() == [True, False, True, True]
    assert out.advantages.tolist() == pytest.approx([1.0, 0.0, -1.0, 0.0])
    assert out.aux_loss.item() == pytest.approx((math.e + 1 / math.e + 1) / 3)


def test_designer_loss_value_head_by_hand():
    values = t(0.5).requires_grad_()
    out = designer_loss(t(-2.0, -4.0), t(2.0, 2.0), t(1.0, -1.0), value_baseline="value_head", values=values,
                        expectile_tau=0.7, aw_temperature=2.0, normalization="per_token")
    # advantages (0.5, -1.5), weights exp(A / 2); u = (0.5, -1.5): value loss (0.7 * 0.25 + 0.3 * 2.25) / 2
    assert out.advantages.tolist() == pytest.approx([0.5, -1.5])
    assert out.aux_loss.item() == pytest.approx((2 * math.exp(0.25) + 4 * math.exp(-0.75)) / 4)
    assert out.value_loss.item() == pytest.approx((0.7 * 0.25 + 0.3 * 2.25) / 2)


def test_designer_gradients_reach_only_their_own_inputs():
    logps = t(-2.0, -4.0).requires_grad_()
    values = t(0.5).requires_grad_()
    out = designer_loss(logps, t(2.0, 2.0), t(1.0, -1.0), value_baseline="value_head", values=values,
                        normalization="per_token")
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
