"""The designer target's temperature against values computed by hand, and against the normal case's T = sigma / g."""

import math

import pytest
import torch

from upo.errors import ConfigError
from upo.rewards.target import designer_temperature, tilted_gain

NAN = float("nan")


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def tilted_mean_by_hand(rewards, temperature):
    weights = [math.exp(r / temperature) for r in rewards]
    return sum(w * r for w, r in zip(weights, rewards)) / sum(weights)


def test_one_pair_by_hand():
    # r = (0, 1): mean 1/2, std 1/2, tilted mean e^(1/T) / (1 + e^(1/T)) = sigmoid(1/T), so
    # gain = (sigmoid(1/T) - 1/2) / (1/2) = tanh(1 / (2T)) and T = 1 / (2 artanh g) = 0.9102392 for g = 0.5.
    solved = designer_temperature(t(0.0, 1.0), 0.5)
    assert solved.temperature == pytest.approx(1 / (2 * math.atanh(0.5)), rel=1e-9)
    assert solved.temperature == pytest.approx(0.9102392, abs=1e-7)
    assert (solved.mean, solved.std, solved.pooled_ceiling, solved.pair_ceiling) == pytest.approx((0.5, 0.5, 1, 1))
    assert solved.awr_message is None
    assert solved.reward_scale(beta=0.1) == pytest.approx(0.1 / 0.9102392, rel=1e-6)  # lambda = beta / T
    # an affine change of the reward scales T with it: r = 10 + 4u gives T = 4 / (2 artanh g)
    assert designer_temperature(t(10.0, 14.0), 0.5).temperature == pytest.approx(4 / (2 * math.atanh(0.5)), rel=1e-9)


def test_two_pairs_by_hand_and_the_awr_ceiling():
    # Pairs (0, 1) and (3, 2), chosen then rejected: r = (0, 3, 1, 2). Mean 1.5, std sqrt(1.25) = 1.1180340.
    # Pooled ceiling (3 - 1.5) / 1.118034 = 1.3416408; better replies 1 and 3, mean 2: (2 - 1.5) / 1.118034 = 0.4472136.
    # Within pairs: (0 - 1)^2 / 2 and (3 - 2)^2 / 2, mean 0.5, over the sample variance 5/3: 0.3.
    rewards = t(0.0, 3.0, 1.0, 2.0)
    low = designer_temperature(rewards, 0.3)
    assert (low.mean, low.std) == pytest.approx((1.5, math.sqrt(1.25)))
    assert low.pooled_ceiling == pytest.approx(1.3416408, abs=1e-7)
    assert low.pair_ceiling == pytest.approx(0.4472136, abs=1e-7)
    assert low.within_pair_share == pytest.approx(0.3)
    assert low.awr_message is None
    high = designer_temperature(rewards, 0.6)
    # at the returned T the tilted mean is 1.5 + 0.6 * 1.118034 = 2.1708204, computed here with math alone
    assert tilted_mean_by_hand([0.0, 3.0, 1.0, 2.0], high.temperature) == pytest.approx(2.1708204, abs=1e-7)
    assert high.awr_message is not None and "\n" not in high.awr_message
    assert "0.447" in high.awr_message and "signed aux_loss" in high.awr_message


def test_replies_without_a_reward_are_left_out():
    # (0, NaN, 1, NaN): only the first pair has rewards, so it is the one-pair case above.
    assert designer_temperature(t(0.0, NAN, 1.0, NAN), 0.5).temperature == pytest.approx(0.9102392, abs=1e-7)
    # (0, 5 | 1, NaN): pooled (0, 5, 1), mean 2, std sqrt(14/3) = 2.1602469; the second pair's best is its only
    # reply, 5: better replies (1, 5), mean 3, (3 - 2) / 2.1602469 = 0.4629100; pooled (5 - 2) / 2.1602469 = 1.3887301.
    solved = designer_temperature(t(0.0, 5.0, 1.0, NAN), 0.4)
    assert solved.pair_ceiling == pytest.approx(0.4629100, abs=1e-7)
    assert solved.pooled_ceiling == pytest.approx(1.3887301, abs=1e-7)
    assert tilted_mean_by_hand([0.0, 5.0, 1.0], solved.temperature) == pytest.approx(2 + 0.4 * math.sqrt(14 / 3))


@pytest.mark.parametrize("target", [0.0, -1.0, NAN, 1.3416408, 5.0])
def test_unreachable_or_meaningless_targets_are_refused_in_one_line(target):
    with pytest.raises(ConfigError, match="designer_target") as refused:
        designer_temperature(t(0.0, 3.0, 1.0, 2.0), target)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("rewards", [t(2.0, 2.0, 2.0, 2.0), t(NAN, NAN), t(1.0, NAN)])
def test_rewards_that_do_not_vary_are_refused(rewards):
    with pytest.raises(ConfigError, match="vary"):
        designer_temperature(rewards, 0.5)


def test_gain_falls_with_temperature_from_the_pooled_ceiling_to_zero():
    torch.manual_seed(0)
    rewards = torch.randn(64, dtype=torch.float64).exp()  # skewed on purpose
    gains = [tilted_gain(rewards, 10.0**k) for k in range(-4, 5)]
    ceiling = designer_temperature(rewards.reshape(-1), 0.5).pooled_ceiling
    # at small T the weight is all on the best reply, to float64's precision: the gain is the ceiling there
    assert all(a > b or a == b == pytest.approx(ceiling, rel=1e-12) for a, b in zip(gains, gains[1:]))
    assert gains[0] == pytest.approx(ceiling, rel=1e-12) and gains[-1] == pytest.approx(0, abs=1e-3)
    assert gains[4] < ceiling  # T = 1


@pytest.mark.parametrize("target", [0.25, 0.5, 1.0])
def test_normal_rewards_give_t_equal_to_sigma_over_g(target):
    # For r ~ N(m, s^2) the tilt exp(r / T) is N(m + s^2 / T, s^2): a gain of g std needs T = s / g.
    torch.manual_seed(0)
    rewards = 1.0 + 2.0 * torch.randn(100_000, dtype=torch.float64)
    solved = designer_temperature(rewards, target)
    assert solved.temperature == pytest.approx(solved.std / target, rel=0.03)
    assert tilted_gain(rewards, solved.temperature) == pytest.approx(target, abs=1e-9)
    # independent pairs: the better of two normals lies sigma / sqrt(pi) = 0.564 std above the mean, and all the
    # variance is within pairs
    assert solved.pair_ceiling == pytest.approx(1 / math.sqrt(math.pi), abs=0.01)
    assert solved.within_pair_share == pytest.approx(1.0, abs=0.02)
