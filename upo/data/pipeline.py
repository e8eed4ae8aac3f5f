"""The one data path: source -> validated pairs -> designer rewards -> token ids."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from datasets import Dataset

from upo import methods
from upo.data.control_tags import add_control_tags
from upo.data.loading import load_preference_pairs, load_unpaired
from upo.data.tokenization import tokenize_dataset
from upo.data.unpaired import drop_mismatched_rewards, with_mismatched_completions
from upo.errors import DataError
from upo.logs import shows_progress
from upo.rewards import score_designer_rewards
from upo.rewards.standardization import DesignerStandardization, score_matrix

PAIR_COLUMNS = ("prompt", "chosen", "rejected")

# The name this class had when it lived here.
DesignerRewardStats = DesignerStandardization


def add_designer_rewards(
    dataset: Dataset,
    reward_funcs: list,
    reward_weights: list[float] | None = None,
    standardize: bool = True,
    stats: DesignerStandardization | None = None,
    cache_dir: str | None = None,
    fit_on_rejected: bool = True,
    reward_timeout: float | None = None,
    show_progress: bool = True,
) -> tuple[Dataset, DesignerStandardization]:
    """Scores both responses of every pair once (cached) and adds the designer columns.

    Adds `designer_scores_chosen` / `designer_scores_rejected` (raw scores, one per objective, NaN for None)
    and `designer_reward_chosen` / `designer_reward_rejected` (`r_aux`, NaN where no objective applies).
    The standardisation is fitted on both responses, or on `chosen` only with `fit_on_rejected=False` (KTO's
    layout, where `rejected` repeats other rows' completions); `stats` (the training set's) is reused as is.
    """
    extra = {c: dataset[c] for c in dataset.column_names if c not in PAIR_COLUMNS}
    scores = score_designer_rewards(
        dataset["prompt"], dataset["chosen"], dataset["rejected"], reward_funcs,
        extra_columns=extra, cache_dir=cache_dir, timeout=reward_timeout, show_progress=show_progress,
    )
    names = list(scores)
    if stats is None:
        fitted_on = {name: list(c) + (list(r) if fit_on_rejected else []) for name, (c, r) in scores.items()}
        stats = DesignerStandardization.fit(fitted_on, reward_weights, standardize)
    else:
        stats.check_names(names)
    for side in (0, 1):
        values = score_matrix({name: scores[name][side] for name in names}, names)
        label = ("chosen", "rejected")[side]
        dataset = dataset.add_column(f"designer_scores_{label}", values.tolist())
        dataset = dataset.add_column(f"designer_reward_{label}", stats.reward(values).tolist())
    return dataset, stats


def designer_rewards(dataset: Dataset) -> torch.Tensor:
    """`r_aux` of the chosen then the rejected response of every row (NaN where none), as `add_designer_rewards`
    stored them. Shape: (2B,)"""
    return torch.tensor(list(dataset["designer_reward_chosen"]) + list(dataset["designer_reward_rejected"]),
                        dtype=torch.float64)


@dataclass
class PreparedData:
    dataset: Dataset
    report: object  # DataReport
    stats: DesignerStandardization | None


def prepare_preference_data(
    source,
    tokenizer,
    args,
    reward_funcs: list | None = None,
    stats: DesignerStandardization | None = None,
    split: str = "train",
) -> PreparedData:
    """Loads, validates, scores and tokenises a preference dataset, and prints what was kept and why.

    A method that reads unpaired rows (KTO) gets them (`upo.data.unpaired`), one that reads tagged pairs (conditional
    SFT) gets its control tags (`upo.data.control_tags`): either way the result has the pair layout the collator
    reads (`upo.methods`).
    """
    rows = methods.lead_method(args.loss_type).rows
    if rows == methods.UNPAIRED:
        dataset, report = load_unpaired(source, split=split)
        dataset = with_mismatched_completions(dataset, args.seed)
    else:
        dataset, report = load_preference_pairs(source, split=split)
    if reward_funcs:
        dataset, stats = add_designer_rewards(
            dataset, reward_funcs, args.reward_weights, args.standardize_rewards, stats, args.reward_cache_dir,
            fit_on_rejected=rows != methods.UNPAIRED, reward_timeout=args.reward_timeout,
            show_progress=shows_progress(args),
        )
        if rows == methods.UNPAIRED:
            dataset = drop_mismatched_rewards(dataset)
    if rows == methods.TAGGED:
        dataset = add_control_tags(dataset, args.csft_tags)
    dataset = tokenize_dataset(
        dataset, tokenizer, args.max_length, args.truncation_mode, report, num_proc=args.dataset_num_proc
    )
    if len(dataset) == 0:
        raise DataError(f"{report.summary()}. No pair is left to train on: raise max_length or shorten the prompts.")
    return PreparedData(dataset, report, stats)
