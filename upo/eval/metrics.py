"""What `upo eval` measures, from replies and scores already computed: every function here is pure but
`implicit_reward_accuracy` (two forward passes) and `score_objectives` (the designer reward functions).

* **designer objectives**: each reward function's mean over the replies, through the training contract;
* **designer score**: per reply, the weighted sum of the objectives standardised with the *training*
  responses' statistics (`upo.rewards.standardization`), averaged over prompts;
* **preference score**: the preference scorer's mean (`upo.eval.scorers`);
* **win rate**: how often the model's reply beats the reference's to the same prompt; ties count one half, and so
  does a prompt that the scorer has no score for on either side;
* **KL** to the reference along the model's own replies (`upo.eval.generate`), averaged over prompts;
* **implicit-reward accuracy** on held-out pairs: how often `log pi/pi_ref` ranks chosen above rejected;
* reply length in words and tokens.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import torch

from upo.data.collator import PreferenceCollator
from upo.data.tokenization import tokenize_dataset
from upo.errors import RewardFunctionError
from upo.logps import forward_logps
from upo.rewards import resolve_reward_funcs, reward_func_name
from upo.rewards.guard import DEFAULT_TIMEOUT
from upo.rewards.scoring import as_score, call_reward_function, value_list
from upo.training.reference import add_reference_logps

# A scorer's two scores closer than this are a tie: float noise must not decide a win.
TIE_TOLERANCE = 1e-6


def score_objectives(prompts: list, replies: list[str], reward_funcs: Sequence, rows: list[dict],
                     timeout: float | None = DEFAULT_TIMEOUT) -> dict[str, list]:
    """Each objective's raw score of each reply, through the same reward-function contract (and checks) as training;
    `timeout`: seconds one call may take (`reward_timeout`).

    A reply to a conversational prompt is passed as one assistant message; `rows`' other columns are kwargs."""
    completions = [[{"role": "assistant", "content": r}] if isinstance(p, list) else r
                   for p, r in zip(prompts, replies)]
    extra_names = sorted({k for row in rows for k in row} - {"prompt", "chosen", "rejected", "prompts", "completions"})
    kwargs = {k: [row.get(k) for row in rows] for k in extra_names}
    out = {}
    for func in resolve_reward_funcs(list(reward_funcs)):
        name = reward_func_name(func)
        returned = call_reward_function(name, func, {**kwargs, "prompts": prompts, "completions": completions},
                                        f"the {len(replies)} generated replies", timeout)
        values = value_list(returned)  # as in training: a list, or a 1-D numpy array or tensor
        if values is None or len(values) != len(replies):
            raise RewardFunctionError(f"reward function {name!r} returned {type(returned).__name__} "
                                      f"{returned!r:.60} for {len(replies)} replies: expected one value per reply.")
        out[name] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else _score(name, v, i)
                     for i, v in enumerate(values)]
        if replies and all(v is None for v in out[name]):  # as in training: an objective that applies to nothing
            raise RewardFunctionError(
                f"reward function {name!r} returned None for all {len(replies)} generated replies: it applies to none "
                f"of them, so its objective would be silently missing from the designer score. Check the columns it "
                f"reads (the rows have {extra_names or 'none besides the prompt'}), or leave it out of reward_funcs.")
    return out


def _score(name: str, value, index: int) -> float:
    try:
        return as_score(value)
    except ValueError as error:
        raise RewardFunctionError(f"reward function {name!r} returned {value!r:.60} for generated reply {index}: "
                                  f"{error}.") from None


def win_indicators(model_scores: Sequence[float], reference_scores: Sequence[float],
                   model_replies: Sequence[str] | None = None,
                   reference_replies: Sequence[str] | None = None) -> list[float]:
    """Per prompt: 1 when the model's reply scores higher than the reference's, 0 when lower, 0.5 for a tie: scores
    within `TIE_TOLERANCE`, the same text, or no score on either side (None or NaN: a scorer's "no opinion", which
    says neither reply is better). The win rate and its paired interval both average these."""
    out = []
    for k, (m, r) in enumerate(zip(model_scores, reference_scores)):
        same_text = (model_replies is not None and reference_replies is not None
                     and model_replies[k] == reference_replies[k])
        tie = same_text or _missing(m) or _missing(r) or abs(m - r) < TIE_TOLERANCE
        out.append(0.5 if tie else float(m > r))
    return out


def _missing(score) -> bool:
    return score is None or math.isnan(score)


def win_rate(model_scores: Sequence[float], reference_scores: Sequence[float],
             model_replies: Sequence[str] | None = None, reference_replies: Sequence[str] | None = None) -> float:
    """Fraction of prompts where the model's reply scores higher than the reference's; ties count one half."""
    wins = win_indicators(model_scores, reference_scores, model_replies, reference_replies)
    return sum(wins) / len(wins) if wins else float("nan")


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def _mean(values) -> float:
    values = _finite(values)
    return statistics.fmean(values) if values else float("nan")


def _std(values) -> float:
    values = _finite(values)
    return statistics.pstdev(values) if values else float("nan")


def summarize(name: str, replies: list[str], objectives: dict[str, list], designer: list[float],
              preference: list[float], reference_preference: list[float] | None, reference_replies: list[str] | None,
              kls: list[float], token_counts: list[int], accuracy: float | None,
              wins: list[float] | None = None) -> dict:
    """The summary row of one model; every value is a mean over prompts unless named otherwise.

    `wins`: per-prompt win indicators when the scorer judges pairs itself (a judge); otherwise they come from
    `preference` against `reference_preference` (no reference: this is the reference, 0.5)."""
    row = {"name": name, "n_prompts": len(replies)}
    for objective, values in objectives.items():
        row[f"objective/{objective}"] = _mean(values)
    row["designer_score"] = _mean(designer)
    row["designer_score_std"] = _std(designer)
    row["preference_score"] = _mean(preference)
    if wins is None and reference_preference is not None:
        wins = win_indicators(preference, reference_preference, replies, reference_replies)
    row["win_rate"] = _mean(wins) if wins is not None else 0.5
    row["kl"] = _mean(kls)
    row["implicit_accuracy"] = accuracy
    row["length_words"] = _mean([len(r.split()) for r in replies])
    row["length_tokens"] = _mean(token_counts)
    return row


def rescore_designer(summary: dict, replies: list[str], rows: list[dict], reward_funcs: Sequence,
                     standardization) -> tuple[dict, list[float], dict[str, list]]:
    """A summary's objective means and designer score recomputed from its stored replies (no generation), with
    `standardization` (a `DesignerStandardization`). Returns the summary, the designer scores and the objectives."""
    prompts = [r["prompt"] for r in rows]
    objectives = score_objectives(prompts, replies, reward_funcs, rows)
    designer = standardization.designer_score(objectives)
    summary = {k: v for k, v in summary.items() if not k.startswith("objective/")}
    for objective, values in objectives.items():
        summary[f"objective/{objective}"] = _mean(values)
    summary["designer_score"] = _mean(designer)
    summary["designer_score_std"] = _std(designer)
    return summary, designer, objectives


def implicit_accuracy_from_logps(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor,
                                 ref_rejected: torch.Tensor) -> float:
    """Fraction of pairs where `log pi/pi_ref` of chosen beats rejected's; a margin of exactly 0 counts one half.

    Args: the summed log-probs of each pair's chosen and rejected responses under the policy and the reference.
        Shape: (N,) each, N > 0
    """
    margin = (chosen - ref_chosen) - (rejected - ref_rejected)
    return float((margin > 0).sum() + 0.5 * (margin == 0).sum()) / len(margin)


@torch.no_grad()
def implicit_reward_accuracy(policy, reference, tokenizer, rows: list[dict], max_length: int = 256,
                             batch_size: int = 16) -> float | None:
    """Fraction of held-out pairs where `log pi/pi_ref` of chosen beats rejected's (ties one half), from one forward
    of each model over each whole pair: the definition the evaluator's faster path keeps to (`upo.eval.pair_logps`).

    None when no row has `chosen` and `rejected`; 0.5 for the reference itself (`reference=None`)."""
    from datasets import Dataset

    pairs = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows
             if r.get("chosen") is not None and r.get("rejected") is not None]
    if not pairs:
        return None
    if reference is None:
        return 0.5
    dataset = tokenize_dataset(Dataset.from_list(pairs), tokenizer, max_length)
    if len(dataset) == 0:
        return None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    collator = PreferenceCollator(pad)
    dataset = add_reference_logps(dataset, reference, collator, batch_size)  # cached: the same for every model
    device = next(policy.parameters()).device
    wins = 0.0
    columns = ["prompt_ids", "chosen_ids", "rejected_ids"]
    for start in range(0, len(dataset), batch_size):
        part = dataset.select(range(start, min(start + batch_size, len(dataset))))
        batch = collator([{c: row[c] for c in columns} for row in part])
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        chosen, rejected = forward_logps(policy, batch).logps.float().cpu().chunk(2)
        ref_chosen, ref_rejected = torch.tensor(part["ref_chosen_logps"]), torch.tensor(part["ref_rejected_logps"])
        margin = (chosen - ref_chosen) - (rejected - ref_rejected)
        wins += float((margin > 0).sum() + 0.5 * (margin == 0).sum())
    return wins / len(dataset)


def paired_interval(run: Sequence[float], base: Sequence[float], scale: float = 1.0, confidence: float = 0.9,
                    resamples: int = 2000, seed: int = 0) -> list[float] | None:
    """A `confidence` interval of `mean(run - base) / scale` by a paired bootstrap over prompts
    (`scipy.stats.bootstrap`, `paired=True`: a resample keeps each prompt's two values together), BCa, or the
    percentile interval where BCa is undefined (e.g. every difference equal). None for fewer than two prompts."""
    import numpy as np
    from scipy import stats

    run, base = np.asarray(run, dtype=float), np.asarray(base, dtype=float)
    keep = np.isfinite(run) & np.isfinite(base)
    run, base = run[keep], base[keep]
    if len(run) < 2:
        return None

    def gain(a, b, axis=-1):
        return (a - b).mean(axis=axis) / scale

    if np.all(run - base == (run - base)[0]):  # no spread: every resample gives the same mean
        value = float(gain(run, base))
        return [round(value, 3), round(value, 3)]
    for method in ("BCa", "percentile"):
        result = stats.bootstrap((run, base), gain, paired=True, vectorized=True, n_resamples=resamples,
                                 confidence_level=confidence, method=method, random_state=np.random.default_rng(seed))
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return [round(float(low), 3), round(float(high), 3)]
    return None


def paired_intervals(run_designer: Sequence[float], base_designer: Sequence[float], unit: float,
                     run_wins: Sequence[float] | None = None, base_wins: Sequence[float] | None = None,
                     resamples: int = 2000, seed: int = 0) -> dict:
    """90% paired-bootstrap intervals over prompts (`paired_interval`) of a run's designer gain (in `unit`s) and its
    win-rate gap against a baseline evaluated on the same prompts: `{"gain_std_ci90", "win_rate_gap_ci90"}`."""
    if not run_designer or not base_designer or len(run_designer) != len(base_designer):
        return {}
    out = {}
    gain = paired_interval(run_designer, base_designer, unit, resamples=resamples, seed=seed)
    if gain is not None:
        out["gain_std_ci90"] = gain
    if run_wins and base_wins and len(run_wins) == len(base_wins):
        gap = paired_interval(run_wins, base_wins, resamples=resamples, seed=seed)
        if gap is not None:
            out["win_rate_gap_ci90"] = gap
    return out


def gaps_to_reference(wins: Sequence[float] | None, designer: Sequence[float], reference_designer: Sequence[float],
                      preference: Sequence[float] | None = None,
                      reference_preference: Sequence[float] | None = None) -> dict:
    """A model's gaps to the reference on the same prompts, each with its 90% interval over the prompts: the paired
    t-interval of one seed (`paired_t_interval`, the frontier's one-seed interval,
    `upo.experiments.frontier.intervals.seeds_prompts_mean`), which says nothing of another training seed.

    Returns (each where defined: two prompts at least, finite on both sides) `win_rate_ci90` (the win rate's, from the
    per-prompt win indicators, within [0, 1]), `designer_gain` and `designer_gain_ci90` (the designer score minus the
    reference's), `preference_gain` and `preference_gain_ci90` (the preference score minus the reference's; not for
    a scorer that judges pairs, whose win rate is the comparison).
    """
    out = {}
    win = paired_t_interval(wins or [])
    if win is not None:
        out["win_rate_ci90"] = [round(max(win[1], 0.0), 4), round(min(win[2], 1.0), 4)]
    pairs = [("designer", designer, reference_designer), ("preference", preference, reference_preference)]
    for name, run, base in pairs:
        if not run or not base or len(run) != len(base):
            continue
        gaps = [_nan(r) - _nan(b) for r, b in zip(run, base)]  # a prompt missing either side: left out
        gap = paired_t_interval(gaps)
        if gap is not None:
            out[f"{name}_gain"] = round(gap[0], 4)
            out[f"{name}_gain_ci90"] = [round(gap[1], 4), round(gap[2], 4)]
    return out


def paired_t_interval(values: Sequence[float], level: float = 0.9) -> tuple[float, float, float] | None:
    """`(mean, low, high)`: the `level` t-interval of the mean of `values` (per-prompt differences, or win
    indicators), `mean +- t(n - 1) * sd / sqrt(n)`, over the finite values; None for fewer than two."""
    from scipy import stats

    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return None
    mean = statistics.fmean(finite)
    half = float(stats.t.ppf((1 + level) / 2, len(finite) - 1)) * statistics.stdev(finite) / math.sqrt(len(finite))
    return mean, mean - half, mean + half


def _nan(value) -> float:
    return math.nan if value is None else float(value)
