"""The frontier's results from what its finished runs stored: summaries, Pareto front, and the target check; with
`seeds`, the same over seeds.

The designer columns are recomputed from the stored replies with the current standardisation (scoring replies
takes milliseconds), so the table always follows its definition without generating again.

Over seeds (`seeds: [0, 1, 2]`): one seed cannot tell these methods apart, since the seed (the adapter's
initialisation, the data order, KTO's mismatched completions) can move a run's designer score by more than the method
does. `seed_summaries` gives, per config run, the mean over seeds of every summary number and its spread (sd over
seeds), and against DPO trained with the same seed the designer gain (in the reference's std), the win-rate gap and
the preference-score gap, each with a 90% bootstrap interval over prompts and seeds (`two_level_interval`);
`seeds_target_check` is the target on those means.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from upo import methods
from upo.data.loading import load_preference_pairs
from upo.eval.evaluate import load_eval_rows
from upo.eval.metrics import paired_intervals, rescore_designer, win_indicators
from upo.experiments.frontier.config import FrontierConfig, run_dir, run_family, settings_key
from upo.experiments.frontier.state import REFERENCE_EVAL, read_eval_summary, train_done, write_train_file
from upo.rewards.standardization import fit_designer_standardization
from upo.run_folder import read_trainer_state

SUMMARY_NUMBERS = ("designer_score", "preference_score", "win_rate", "kl", "implicit_accuracy", "length_words")


def collect_results(config: FrontierConfig) -> dict:
    """Every finished run's summary (and the reference's), with the options that make the run, and the target
    check: `{"reference", "reference_designer_std", "runs": [...], "target"}`."""
    key = settings_key(config)
    out = Path(config.output_dir)
    settings = config.evaluation
    rows = load_eval_rows(settings.eval_data, settings.max_prompts)
    standardization = None

    def rescored(stored: dict) -> dict:
        nonlocal standardization
        if standardization is None:
            write_train_file(config)
            pairs = load_preference_pairs(settings.train_data)[0].to_list()
            standardization = fit_designer_standardization(pairs, settings.reward_funcs, settings.reward_weights,
                                                           settings.standardize_rewards)
        summary, designer, _ = rescore_designer(stored["summary"], stored["replies"], rows, settings.reward_funcs,
                                                standardization)
        return {**stored, "summary": summary, "designer": designer}

    reference = read_eval_summary(out / REFERENCE_EVAL, key)
    if reference is not None and reference.get("replies"):
        reference = rescored(reference)
    runs = []
    for run in config.runs:
        stored = read_eval_summary(run_dir(config, run.name), key)
        if stored is None or not train_done(config, run):
            continue
        if stored.get("replies"):
            stored = rescored(stored)
        wins = stored.get("wins")
        if wins is None and reference is not None and stored.get("replies"):
            wins = win_indicators(stored["preference"], reference["preference"], stored["replies"],
                                  reference["replies"])
        runs.append({"name": run.name, "family": run_family({"options": run.options}), "options": run.options,
                     "group": run.group, "seed": run.seed,
                     "summary": stored["summary"], "designer": stored["designer"], "wins": wins,
                     "preference": stored.get("preference"), "replies": stored.get("replies"),
                     "kl": stored.get("kl")})
    reference_summary = reference["summary"] if reference else None
    per_prompt = {k: reference.get(k) for k in ("replies", "preference", "designer")} if reference else None
    results = {"reference": reference_summary, "preference_scorer": preference_axis_label(config),
               "reference_designer_std": reference_summary["designer_score_std"] if reference_summary else None,
               "reference_per_prompt": per_prompt, "prompts": [row["prompt"] for row in rows],
               "reference_answers": [row.get("reference_answer") for row in rows],
               "runs": runs, "target": target_check(runs, reference_summary)}
    if config.seeds:  # the table and the target over seeds
        groups = seed_summaries(runs, reference_summary, {r["name"]: run_dir(config, r["name"]) for r in runs})
        results["seeds"] = {"groups": groups, "target": seeds_target_check(groups)}
    return results


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (>= on both axes, > on one), by increasing x."""
    front = [i for i, (x, y) in enumerate(points)
             if not any(x2 >= x and y2 >= y and (x2 > x or y2 > y) for x2, y2 in points)]
    return sorted(front, key=lambda i: points[i][0])


def target_check(runs: list[dict], reference: dict | None, win_rate_tolerance: float = 0.02,
                 min_gain_std: float = 0.5) -> dict:
    """The target, run by run: a UPO run within 2 points of the win rate of DPO (the DPO run of the same seed, else
    the first) whose designer score beats DPO's by at least 0.5 std (std of the reference's designer score over the
    prompts), and that no run of another method with the same seed dominates (designer and preference scores both at
    least as high, one higher: MODPO, DRO-V, A-LOL, DPO or any other baseline). A grid over seeds is judged on its
    means instead (`seeds_target_check`)."""
    dpo_runs = [r for r in runs if r["family"] == methods.DPO_FAMILY]
    if not dpo_runs or reference is None:
        return {"met": None, "reason": "needs a finished DPO run and the reference"}
    unit = reference["designer_score_std"] or 1.0
    candidates = []
    for r in runs:
        if r["family"] != methods.UPO_FAMILY:
            continue
        s = r["summary"]
        seed = r.get("options", {}).get("seed")
        dpo = next((d for d in dpo_runs if d.get("options", {}).get("seed") == seed), dpo_runs[0])
        gain = (s["designer_score"] - dpo["summary"]["designer_score"]) / unit
        same_preference = abs(s["win_rate"] - dpo["summary"]["win_rate"]) <= win_rate_tolerance + 1e-9
        dominated_by = [o["name"] for o in runs if o["family"] != methods.UPO_FAMILY and _dominates(o["summary"], s)
                        and o.get("options", {}).get("seed") == seed]
        intervals = paired_intervals(r.get("designer") or [], dpo.get("designer") or [], unit, r.get("wins"),
                                     dpo.get("wins"))
        candidates.append({"name": r["name"], "dpo": dpo["name"], "gain_std": round(gain, 3),
                           "win_rate_gap": round(s["win_rate"] - dpo["summary"]["win_rate"], 4), **intervals,
                           "same_preference": same_preference, "dominated_by": dominated_by,
                           "met": same_preference and gain >= min_gain_std and not dominated_by})
    return {"met": any(c["met"] for c in candidates), "unit_std": unit, "candidates": candidates}


def _dominates(a: dict, b: dict) -> bool:
    """Summary `a` has designer and preference scores both at least `b`'s, and one of them higher."""
    x, y = (a["designer_score"], a["preference_score"]), (b["designer_score"], b["preference_score"])
    return x[0] >= y[0] and x[1] >= y[1] and x != y


def preference_axis_label(config: FrontierConfig) -> str:
    """What the preference score of this grid measures, in a few words (the plot's axis)."""
    spec = config.scorer.preference_scorer
    kind, _, argument = spec.partition(":")
    return {"similarity": "preference score (similarity to the reference answer)",
            "reward_model": f"preference score (reward model {argument})",
            "function": f"preference score ({argument})",
            "judge": "preference score (judge's win rate vs the reference)"}.get(kind, "preference score")


# ------------------------------------------------------------------------------------------- over seeds


def two_level_interval(differences: list[list[float]], resamples: int = 4000, seed: int = 0,
                       level: float = 0.90) -> list[float] | None:
    """Percentile bootstrap interval of the mean of a (seeds x prompts) table, resampling seeds and prompts.

    Each resample draws the seeds with replacement and, independently, the prompts (the same prompts for every
    drawn seed, since every seed is evaluated on the same prompts), so the interval holds both the noise of
    training (seeds) and that of evaluation (prompts). One level would be `scipy.stats.bootstrap`; it has no
    two-level resampling. With 3 seeds there are only 10 distinct draws of seeds: the interval is coarse, and
    honest about it. None without data.
    """
    import numpy as np

    table = np.asarray(differences, dtype=float)
    if table.ndim != 2 or table.size == 0:
        return None
    rng = np.random.default_rng(seed)
    n_seeds, n_prompts = table.shape
    means = np.empty(resamples)
    for b in range(resamples):
        rows = rng.integers(0, n_seeds, n_seeds)
        columns = rng.integers(0, n_prompts, n_prompts)
        means[b] = table[rows][:, columns].mean()
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return [round(float(low), 4), round(float(high), 4)]


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def value_fit(run_folder: Path) -> dict:
    """The value's explained variance the run logged: on the evaluation pairs (`eval_value/explained_variance`, when
    it was trained with an `eval_dataset`) and over its last logging window (`value/explained_variance`)."""
    import re

    state = read_trainer_state(run_folder)
    history = (state or {}).get("log_history") or []
    found = {}
    for key, name in (("eval_value/explained_variance", "held_out"), ("value/explained_variance", "train")):
        values = [entry[key] for entry in history if key in entry]
        log = Path(run_folder) / "train.log"
        if state is None and log.is_file():  # a run trained before run folders held trainer_state.json
            values = [float(v) for v in re.findall(rf"'{re.escape(key)}': (-?[0-9.e+-]+|nan)", log.read_text())]
        if values:
            found[name] = values[-1]
    return found


def seed_summaries(runs: list[dict], reference: dict | None, run_folders: dict[str, Path] | None = None) -> list[dict]:
    """One entry per config run (in the runs' order) over its finished seeds; see the module docstring.

    Args:
        runs: `collect_results`' runs, each with `group`, `seed`, `summary` and the per-prompt `designer`, `wins`
            and `preference` lists.
        reference: the reference's summary (its `designer_score_std` is the unit of the designer gain).
        run_folders: run name -> folder, to read the value's explained variance (`value_fit`).
    """
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run.get("group", run["name"]), []).append(run)
    unit = (reference or {}).get("designer_score_std") or 1.0
    dpo = next((members for members in groups.values() if members[0]["family"] == methods.DPO_FAMILY), None)
    dpo_by_seed = {r["seed"]: r for r in dpo or []}
    out = []
    for name, members in groups.items():
        options = {k: v for k, v in members[0]["options"].items() if k != "seed"}
        entry = {"name": name, "family": members[0]["family"], "options": options,
                 "seeds": [r["seed"] for r in members], "runs": [r["name"] for r in members]}
        for key in SUMMARY_NUMBERS:
            values = [r["summary"].get(key) for r in members]
            values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
            if values:
                entry[key] = statistics.fmean(values)
                entry[f"{key}_sd"] = _sd(values)
                entry[f"{key}_per_seed"] = values
        if run_folders:
            fits = [value_fit(run_folders[r["name"]]) for r in members if r["name"] in run_folders]
            held_out = [f["held_out"] for f in fits if "held_out" in f and not math.isnan(f["held_out"])]
            if held_out:
                entry["value_explained_variance"] = statistics.fmean(held_out)
        paired = [(r, dpo_by_seed[r["seed"]]) for r in members if r["seed"] in dpo_by_seed]
        if paired and entry["family"] != methods.DPO_FAMILY:
            entry["paired_seeds"] = [r["seed"] for r, _ in paired]
            for key, field, scale in (("designer", "gain_std", unit), ("wins", "win_rate_gap", 1.0),
                                      ("preference", "preference_gap", 1.0)):
                if all(r.get(key) and d.get(key) and len(r[key]) == len(d[key]) for r, d in paired):
                    table = [[(a - b) / scale for a, b in zip(r[key], d[key])] for r, d in paired]
                    entry[field] = statistics.fmean(v for row in table for v in row)
                    entry[f"{field}_ci90"] = two_level_interval(table)
        out.append(entry)
    return out


def seeds_target_check(groups: list[dict], min_gain_std: float = 0.5) -> dict:
    """The target over seeds: a UPO run whose mean designer score is at least `min_gain_std` std above DPO's (mean
    over the same seeds) at DPO's preference (the 90% interval of its win-rate gap includes 0), and that no run of
    another method dominates (a mean designer score and a mean preference score both at least as high, one
    higher: MODPO, DRO-V, A-LOL, DPO or any other baseline of the grid)."""
    candidates = []
    for g in groups:
        if g["family"] != methods.UPO_FAMILY or "gain_std" not in g:
            continue
        gap_ci = g.get("win_rate_gap_ci90")
        at_dpo_preference = gap_ci is not None and gap_ci[0] <= 0 <= gap_ci[1]
        x, y = g["designer_score"], g["preference_score"]
        dominated_by = [o["name"] for o in groups if o["family"] != methods.UPO_FAMILY and "designer_score" in o
                        and o["designer_score"] >= x and o["preference_score"] >= y
                        and (o["designer_score"] > x or o["preference_score"] > y)]
        candidates.append({"name": g["name"], "gain_std": round(g["gain_std"], 3),
                           "gain_std_ci90": g.get("gain_std_ci90"),
                           "win_rate_gap": round(g["win_rate_gap"], 4), "win_rate_gap_ci90": gap_ci,
                           "at_dpo_preference": at_dpo_preference, "dominated_by": dominated_by,
                           "met": g["gain_std"] >= min_gain_std and at_dpo_preference and not dominated_by})
    return {"met": any(c["met"] for c in candidates) if candidates else None, "candidates": candidates}
