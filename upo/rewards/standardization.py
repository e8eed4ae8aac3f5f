"""How raw designer scores become one number: standardise each objective, weight, sum.

`DesignerStandardization` holds what is fitted once on the *training* responses (each objective's mean and
std, and its weight) and is reused everywhere the designer rewards are read: training's `r_aux`
(`upo.data.pipeline`), the saved `upo_config.json` (`designer_reward_stats`), and `upo eval`'s designer score,
so a model is judged on the same scale it was trained with. The arithmetic itself is the pure functions
`designer_statistics` and `combine_designer_rewards` of `upo.losses`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch

from upo.errors import ConfigError
from upo.losses import combine_designer_rewards, designer_statistics
from upo.rewards.scoring import score_designer_rewards

# Evaluation clips each standardised objective to [-EVAL_Z_CLIP, EVAL_Z_CLIP] before weighting, so that one
# degenerate reply (a single 47-letter "word" scores about -3,500 in Flesch reading ease, -178 std) cannot
# outweigh all the other prompts in a mean over 64 of them. Training does not clip: its advantage weights are
# capped by `aw_max_weight` instead.
EVAL_Z_CLIP = 3.0


def score_matrix(scores: Mapping[str, Sequence[float | None]], names: Sequence[str]) -> torch.Tensor:
    """Raw scores as an (M, K) float64 tensor, objectives in the order of `names`, `NaN` for None."""
    columns = [[math.nan if v is None else float(v) for v in scores[name]] for name in names]
    n = len(columns[0]) if columns else 0
    return torch.tensor(columns, dtype=torch.float64).T.reshape(n, len(names))


@dataclass
class DesignerStandardization:
    """Each objective's weight, and the mean and std of its raw score over the training responses."""

    names: list[str]
    weights: list[float]
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, scores: Mapping[str, Sequence[float | None]], weights: Sequence[float] | None = None,
            standardize: bool = True) -> DesignerStandardization:
        """Fitted on raw scores, `{name: one value per response (None: not applicable)}`; `standardize=False`
        keeps raw units (mean 0, std 1). Weights default to 1 each."""
        names = list(scores)
        if standardize:
            mean, std = designer_statistics(score_matrix(scores, names))
            mean, std = mean.tolist(), std.tolist()
        else:
            mean, std = [0.0] * len(names), [1.0] * len(names)
        weights = [1.0] * len(names) if weights is None else [float(w) for w in weights]
        return cls(names, weights, mean, std)

    @classmethod
    def fit_on_pairs(cls, prompts: list, chosen: list, rejected: list, reward_funcs: Sequence,
                     weights: Sequence[float] | None = None, standardize: bool = True,
                     extra_columns: dict[str, list] | None = None, cache_dir: str | None = None,
                     fit_on_rejected: bool = True) -> tuple[DesignerStandardization, dict]:
        """Scores both responses of every pair (once: cached) and fits on them, or on `chosen` alone.

        Returns the standardisation and the raw scores, `{name: (chosen_scores, rejected_scores)}`."""
        scores = score_designer_rewards(prompts, chosen, rejected, list(reward_funcs), extra_columns=extra_columns,
                                        cache_dir=cache_dir, show_progress=False)
        fitted_on = {name: list(c) + (list(r) if fit_on_rejected else []) for name, (c, r) in scores.items()}
        return cls.fit(fitted_on, weights, standardize), scores

    @classmethod
    def from_dict(cls, stored: Mapping) -> DesignerStandardization:
        """From its `to_dict()` (as `upo_config.json` stores it under `designer_reward_stats`)."""
        return cls(list(stored["names"]), [float(w) for w in stored["weights"]], [float(m) for m in stored["mean"]],
                   [float(s) for s in stored["std"]])

    def to_dict(self) -> dict:
        return asdict(self)

    def check_names(self, names: Sequence[str], where: str = "the data") -> None:
        if list(names) != self.names:
            raise ConfigError(f"Designer objectives {list(names)} of {where} differ from the ones this "
                              f"standardisation was fitted on, {self.names}: use the same reward_funcs, in the "
                              "same order.")

    def reward(self, matrix: torch.Tensor) -> torch.Tensor:
        """Training's `r_aux` per response (`NaN` where no objective applies). `matrix`: raw scores, (M, K)."""
        w, mean, std = (torch.tensor(x, dtype=torch.float64) for x in (self.weights, self.mean, self.std))
        return combine_designer_rewards(matrix.to(torch.float64), w, mean, std)

    def designer_score(self, scores: Mapping[str, Sequence[float | None]],
                       z_clip: float | None = EVAL_Z_CLIP) -> list[float]:
        """Evaluation's designer score per reply: `sum_k w_k clip((r_k - mean_k) / std_k, +-z_clip)`.

        `scores`: `{name: one raw value per reply}`. Objectives that do not apply to a reply count 0, so a reply
        where none applies scores 0 (the training mean), not NaN: a mean over prompts stays defined."""
        matrix = score_matrix(scores, self.names)
        w, mean, std = (torch.tensor(x, dtype=torch.float64) for x in (self.weights, self.mean, self.std))
        z = (matrix - mean) / std
        if z_clip is not None:
            z = z.clamp(-z_clip, z_clip)
        return (torch.nan_to_num(z, nan=0.0) * w).sum(-1).tolist()


def fit_designer_standardization(pairs: Sequence[Mapping], reward_funcs: Sequence,
                                 reward_weights: Sequence[float] | None, standardize: bool) -> DesignerStandardization:
    """The standardisation UPO trains with, fitted on both responses of `pairs`: rows with `prompt`, `chosen` and
    `rejected`, whose other columns reach the reward functions as in training (`upo eval`'s `--train_data` and
    evaluation pairs, the frontier's training file)."""
    columns = sorted({key for row in pairs for key in row} - {"prompt", "chosen", "rejected"})
    standardization, _ = DesignerStandardization.fit_on_pairs(
        [row["prompt"] for row in pairs], [row["chosen"] for row in pairs], [row["rejected"] for row in pairs],
        reward_funcs, reward_weights, standardize,
        extra_columns={key: [row.get(key) for row in pairs] for key in columns})
    return standardization
