"""The frontier's results from what its finished runs stored: summaries, Pareto front, and the target check.

The designer columns are recomputed from the stored replies with the current standardisation (scoring replies
takes milliseconds), so the table always follows its definition without generating again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from upo import methods
from upo.experiments.frontier.config import (
    eval_settings,
    frontier_runs,
    load_frontier_config,
    run_dir,
    run_family,
    settings_key,
)
from upo.experiments.frontier.state import REFERENCE_EVAL, read_eval_summary, train_done


def collect_results(config: dict) -> dict:
    """Every finished run's summary (and the reference's), with the options that make the run, and the target
    check: `{"reference", "reference_designer_std", "runs": [...], "target"}`."""
    from upo.eval.evaluate import fit_designer_standardization, load_eval_rows
    from upo.eval.metrics import rescore_designer, win_indicators

    config = load_frontier_config(config)
    key = settings_key(config)
    out = Path(config["output_dir"])
    settings = eval_settings(config)
    rows = load_eval_rows(settings.eval_data, settings.max_prompts)
    standardization = None

    def rescored(stored: dict) -> dict:
        nonlocal standardization
        if standardization is None:
            standardization = fit_designer_standardization(settings.train_data, settings.reward_funcs,
                                                           settings.reward_weights, settings.standardize_rewards)
        summary, designer, _ = rescore_designer(stored["summary"], stored["replies"], rows, settings.reward_funcs,
                                                standardization)
        return {**stored, "summary": summary, "designer": designer}

    reference = read_eval_summary(out / REFERENCE_EVAL, key)
    if reference is not None and reference.get("replies"):
        reference = rescored(reference)
    runs = []
    for run in frontier_runs(config):
        stored = read_eval_summary(run_dir(config, run["name"]), key)
        if stored is None or not train_done(config, run):
            continue
        if stored.get("replies"):
            stored = rescored(stored)
        wins = stored.get("wins")
        if wins is None and reference is not None and stored.get("replies"):
            wins = win_indicators(stored["preference"], reference["preference"], stored["replies"],
                                  reference["replies"])
        runs.append({"name": run["name"], "family": run_family(run), "options": run["options"],
                     "group": run["group"], "seed": run["seed"],
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
    if config.get("seeds"):  # the table and the target over seeds (upo.experiments.frontier.seeds)
        from upo.experiments.frontier.seeds import seed_summaries, seeds_target_check

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
    means instead (`upo.experiments.frontier.seeds.seeds_target_check`)."""
    from upo.eval.metrics import paired_intervals

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


def preference_axis_label(config: dict) -> str:
    """What the preference score of this grid measures, in a few words (the plot's axis)."""
    spec = config["eval"].get("preference_scorer", "similarity")
    kind, _, argument = spec.partition(":")
    return {"similarity": "preference score (similarity to the reference answer)",
            "reward_model": f"preference score (reward model {argument})",
            "function": f"preference score ({argument})",
            "judge": "preference score (judge's win rate vs the reference)"}.get(kind, "preference score")
