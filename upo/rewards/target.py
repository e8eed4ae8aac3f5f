"""From a designer target to UPO's temperature: the `T` (reward scale `lambda = beta / T`) whose tilt of the reference,
`pi_ref * exp(r_aux / T)`, raises the designer reward by a stated number of standard deviations.

Solved once before training from the training replies' cached `r_aux`, which stand in for samples of `pi_ref`: both
replies of every pair, pooled. In the constrained form of the problem (maximise preference subject to a designer gain
of at least `g`) `1 / T` is the Lagrange multiplier of the constraint, so a target fixes `T`; `alpha` then only
weighs how hard training pulls towards the tilted distribution.

    gain(T) = (sum_i r_i exp(r_i / T) / sum_i exp(r_i / T) - mean(r)) / std(r)

`gain` falls strictly as `T` grows (its derivative in `log T` is `-Var_T(r) / (T std(r))`, `Var_T` the variance under
the tilted weights, positive unless every reply has the same reward), from the pooled ceiling `(max(r) - mean) / std`
as `T -> 0` to 0 as `T -> inf`: so every target in between has exactly one `T`, and bisection in `log T` finds it.
For a normal `r_aux` with std `sigma` the tilt shifts the mean by exactly `sigma^2 / T`, so `T = sigma / g`.

The arithmetic is pure (a tensor in, numbers out), like `upo.losses`; it lives here because it reads the designer
rewards of the whole training set, once, as `upo.rewards.standardization` does, not a batch's log-probs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from upo.errors import ConfigError


@dataclass(frozen=True)
class DesignerTemperature:
    """The temperature that meets a designer target, and what reweighting the training replies can reach at all.

    Gains are in standard deviations of `r_aux` over the training replies (population std).
    """

    target: float  # g, the requested gain
    temperature: float  # T with gain(T) = g
    mean: float  # of r_aux over the training replies that have one
    std: float
    pooled_ceiling: float  # gain as T -> 0: the best reply of the whole set
    pair_ceiling: float  # mean over pairs of the better reply's gain: the most "awr" can approach
    # Share of Var(r_aux) within pairs, mean((r_c - r_r)^2 / 2) / Var(r_aux) (at most 1; NaN without a pair that has
    # both rewards): the pooled tilt also rewards variation between prompts, which no policy can choose; for a normal
    # r_aux a per-prompt tilt at the returned T gains about this share of the target.
    within_pair_share: float
    awr_message: str | None  # one line when the target is above `pair_ceiling`, else None

    def reward_scale(self, beta: float) -> float:
        """`lambda = beta / T`: the weight of `r_aux` beside DPO's implicit reward `beta * log pi/pi_ref`."""
        return beta / self.temperature


def tilted_gain(rewards: torch.Tensor, temperature: float) -> float:
    """`gain(T)`: how far the self-normalised mean of `r_aux` under weights `exp(r_aux / T)` lies above the plain
    mean, in standard deviations, over the replies that have a reward.

    Args:
        rewards: `r_aux` of the training replies, `NaN` where none. Shape: (M,)
    Returns:
        The gain; 0 when the rewards do not vary.
    """
    r = _finite(rewards)
    std = r.std(unbiased=False).item() if r.numel() else 0.0
    return _gain(r, r.mean().item(), std, temperature) if std > 0 else 0.0


def designer_temperature(rewards: torch.Tensor, target: float, *, rtol: float = 1e-10) -> DesignerTemperature:
    """Solve `gain(T) = target` for `T` by bisection in `log T` (see the module docstring for why it is monotone).

    Args:
        rewards: `r_aux` of both replies of every training pair, chosen then rejected, `NaN` where none. Shape: (2B,)
        target: `g`, the designer gain wanted, in std of `r_aux` (e.g. 0.5).
        rtol: relative precision of `T`.
    Returns:
        A `DesignerTemperature`; its `awr_message` is set when `g` is above what "awr" can approach.
    Raises:
        ConfigError: `g <= 0`, `g` at or above the pooled ceiling (no reweighting of the replies reaches it), or
            rewards that do not vary.
    """
    if not math.isfinite(target) or target <= 0:
        raise ConfigError(f"designer_target must be a gain above 0 in std of the designer reward (e.g. 0.5); "
                          f"got {target}.")
    rewards = rewards.detach().to(torch.float64).cpu()
    if rewards.dim() != 1 or rewards.numel() % 2:
        raise ValueError(f"rewards must hold both replies of every pair, shape (2B,); got {tuple(rewards.shape)}.")
    r = _finite(rewards)
    if r.numel() < 2 or r.std(unbiased=False).item() == 0:
        raise ConfigError(f"designer_target needs designer rewards that vary over the training replies; "
                          f"{r.numel()} of {rewards.numel()} replies have one and they do not vary.")
    mean, std = r.mean().item(), r.std(unbiased=False).item()
    pooled = (r.max().item() - mean) / std
    chosen, rejected = rewards.reshape(2, -1)
    best = torch.fmax(chosen, rejected)  # the defined side where only one has a reward
    best = best[~torch.isnan(best)]
    pair_ceiling = (best.mean().item() - mean) / std
    both = ~(torch.isnan(chosen) | torch.isnan(rejected))
    within = float("nan")
    if both.any():  # both estimate the same variance without bias when replies are independent draws
        within = min(((chosen[both] - rejected[both]) ** 2 / 2).mean().item() / r.var().item(), 1.0)
    if target >= pooled:
        raise ConfigError(f"designer_target {target} is beyond any reweighting of the training replies: the best "
                          f"reply of all lies {pooled:.3f} std above the mean; set designer_target below {pooled:.3f}.")
    awr_message = None
    if target > pair_ceiling:
        awr_message = (f"designer_target {target} is above what aux_loss 'awr' can approach ({pair_ceiling:.3f} std: "
                       f"the better reply of every pair); use a signed aux_loss (infonca, exo) to go past the data.")

    # Bracket the root in u = log T around the normal case's T = std / g, then bisect.
    def excess(u: float) -> float:
        return _gain(r, mean, std, math.exp(u)) - target

    lo = hi = math.log(std / target)
    step = math.log(4.0)
    while excess(lo) < 0:  # gain too small: lower T
        lo -= step
    while excess(hi) > 0:  # gain too large: raise T
        hi += step
    while hi - lo > rtol:  # about 40 halvings from the bracket's width to 1e-10
        mid = (lo + hi) / 2
        if excess(mid) > 0:
            lo = mid
        else:
            hi = mid
    return DesignerTemperature(target=target, temperature=math.exp((lo + hi) / 2), mean=mean, std=std,
                               pooled_ceiling=pooled, pair_ceiling=pair_ceiling, within_pair_share=within,
                               awr_message=awr_message)


def _finite(rewards: torch.Tensor) -> torch.Tensor:
    r = rewards.detach().to(torch.float64).cpu().reshape(-1)
    return r[~torch.isnan(r)]


def _gain(r: torch.Tensor, mean: float, std: float, temperature: float) -> float:
    weights = torch.softmax((r - r.max()) / temperature, dim=0)  # exp(r / T), normalised; no inf even as T -> 0
    return ((weights * r).sum().item() - mean) / std
