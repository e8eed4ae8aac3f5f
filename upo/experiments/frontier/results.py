"""The frontier's results from what its finished runs stored: summaries, each config run over its seeds with its gaps
to DPO, each family's front, and the declared target.

The designer columns are recomputed from the stored replies with the current standardisation (scoring replies
takes milliseconds), so the table always follows its definition without generating again.

`seed_summaries` gives, per config run, the mean over its seeds of every summary number and its spread (sd over
seeds), and against DPO trained with the same seed the designer gain (in the reference's std), the win-rate gap and
the preference-score gap, each with a 90% interval over seeds and prompts (`upo.experiments.frontier.intervals`; with
one seed, over prompts only). One seed cannot tell these methods apart, since the seed (the adapter's
initialisation, the data order, KTO's mismatched completions) can move a run's designer score by more than the method
does. `family_fronts` groups the config runs by family into fronts (`upo.experiments.frontier.fronts`), with the
designer gain at DPO's preference and the area each dominates; `upo.experiments.frontier.target.judge_target` judges
the target the config declares, if any.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from upo import methods
from upo.config import UPOConfig
from upo.data.loading import load_preference_pairs
from upo.eval.evaluate import load_eval_rows
from upo.eval.metrics import rescore_designer, win_indicators
from upo.experiments.frontier.config import FrontierConfig, option_default, run_dir, run_family, settings_key
from upo.experiments.frontier.fronts import dominated_area, family_front
from upo.experiments.frontier.intervals import LEVEL, finite_columns, seeds_prompts_mean
from upo.experiments.frontier.state import REFERENCE_EVAL, read_eval_summary, train_done, write_train_file
from upo.experiments.frontier.target import judge_target
from upo.rewards.standardization import fit_designer_standardization
from upo.run_folder import read_trainer_state

SUMMARY_NUMBERS = ("designer_score", "preference_score", "win_rate", "kl", "implicit_accuracy", "length_words")


def collect_results(config: FrontierConfig) -> dict:
    """Every finished run's summary (and the reference's), with the options that make the run; each config run over
    its seeds (`groups`), each family's front (`fronts`, with the point its areas are measured from), and the
    declared target judged (`target`, None without one)."""
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
    folders = {r["name"]: run_dir(config, r["name"]) for r in runs} if config.seeds else None
    groups = seed_summaries(runs, reference_summary, folders)
    fronts, area_reference = family_fronts(runs, reference_summary)
    return {"reference": reference_summary, "preference_scorer": preference_axis_label(config),
            "reference_designer_std": reference_summary["designer_score_std"] if reference_summary else None,
            "reference_per_prompt": per_prompt, "prompts": [row["prompt"] for row in rows],
            "reference_answers": [row.get("reference_answer") for row in rows], "seeds": config.seeds,
            "runs": runs, "groups": groups, "fronts": fronts, "area_reference": area_reference,
            "target": judge_target(config.target, {f["family"]: f for f in fronts}, groups)}


def family_fronts(runs: list[dict], reference: dict | None) -> tuple[list[dict], list[float] | None]:
    """Each family's front (`fronts.family_front`, in the order the families first appear), with the area it
    dominates, and the point the areas are measured from: `(fronts, [designer in std, preference])`.

    The areas' point is the grid's nadir: the lowest designer score (in the reference's std) and the lowest preference
    score among the reference model and every point of every front, so that every family's area is measured from the
    same point. A run added to the grid can lower it, and with it change every area: compare areas within one
    report."""
    unit = (reference or {}).get("designer_score_std") or 1.0
    groups: dict[str, dict] = {}
    for run in runs:
        name = run.get("group", run["name"])
        entry = groups.setdefault(name, {"name": name, "family": run["family"], "by_seed": {},
                                         "options": {k: v for k, v in run["options"].items() if k != "seed"}})
        entry["by_seed"][run.get("seed")] = run
    dpo = next((g for g in groups.values() if g["family"] == methods.DPO_FAMILY), None)
    families = dict.fromkeys(g["family"] for g in groups.values())
    defaults = {}  # a strength a run leaves unset is named with its default
    for name in {name for group in groups.values() for name in group["options"]}:
        try:
            defaults[name] = option_default(UPOConfig, name)
        except KeyError:  # not a `upo train` option of UPOConfig's own (e.g. a TrainingArguments one given per run)
            continue
    fronts = [family_front(family, [g for g in groups.values() if g["family"] == family], dpo, unit,
                           defaults=defaults) for family in families]
    points = [(p["designer_score"] / unit, p["preference_score"]) for f in fronts for p in f["points"]]
    if reference and "preference_score" in reference:
        points.append((reference["designer_score"] / unit, reference["preference_score"]))
    points = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    if not points:
        return fronts, None
    nadir = [min(x for x, _ in points), min(y for _, y in points)]
    for front in fronts:
        front["area"] = dominated_area([(p["designer_score"] / unit, p["preference_score"]) for p in front["points"]],
                                       tuple(nadir))
    return fronts, nadir


def preference_axis_label(config: FrontierConfig) -> str:
    """What the preference score of this grid measures, in a few words (the plot's axis)."""
    spec = config.scorer.preference_scorer
    kind, _, argument = spec.partition(":")
    return {"similarity": "preference score (similarity to the reference answer)",
            "reward_model": f"preference score (reward model {argument})",
            "function": f"preference score ({argument})",
            "judge": "preference score (judge's win rate vs the reference)"}.get(kind, "preference score")


# ------------------------------------------------------------------------------------------- over seeds


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
    dpo = next((name for name, members in groups.items() if members[0]["family"] == methods.DPO_FAMILY), None)
    dpo_by_seed = {r["seed"]: r for r in groups.get(dpo, [])}
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
        if paired and name != dpo:
            entry["paired_seeds"] = [r["seed"] for r, _ in paired]
            for key, field, scale in (("designer", "gain_std", unit), ("wins", "win_rate_gap", 1.0),
                                      ("preference", "preference_gap", 1.0)):
                if all(r.get(key) and d.get(key) and len(r[key]) == len(d[key]) for r, d in paired):
                    ours, dpos = finite_columns([[r[key] for r, _ in paired], [d[key] for _, d in paired]])
                    estimate = seeds_prompts_mean((ours - dpos) / scale)
                    if estimate is not None:
                        entry[field] = estimate.mean
                        entry[f"{field}_ci90"] = estimate.interval(LEVEL)
                        entry[f"{field}_variance_parts"] = [list(part) for part in estimate.parts]
        out.append(entry)
    return out
