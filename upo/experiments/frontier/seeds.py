"""Seeds: each run of a frontier trained once per seed, and the table, the target and the plot read over seeds.

One seed cannot tell these methods apart: the seed (the adapter's initialisation, the data order, KTO's mismatched
completions) can move a run's designer score by more than the method does. With `seeds: [0, 1, 2]` in the config,
every run is trained once per seed, as `{name}-s{seed}` with `seed` set (`expand_seeds`); everything else about
the runs, their folders and their resume keys stays as for any run.

* `seed_summaries`: per config run, the mean over seeds of every summary number and its spread (sd over seeds);
  against DPO trained with the same seed, the designer gain (in the reference's std), the win-rate gap and the
  preference-score gap, each with a 90% bootstrap interval over prompts and seeds (`two_level_interval`);
* `seeds_target_check`: the target on those means (see its docstring);
* `format_seed_table`, `plot_seed_means`: the report's table and plot (means, each seed's point, the spread).
"""

from __future__ import annotations

import math
import statistics
import textwrap
from pathlib import Path

from upo import methods

SUMMARY_NUMBERS = ("designer_score", "preference_score", "win_rate", "kl", "implicit_accuracy", "length_words")


def expand_seeds(runs: list[dict], seeds: list[int] | None) -> list[dict]:
    """Each run once per seed, seed-major (every run's seed 0 first), so that a grid stopped early has every method
    at some seed; without `seeds`, the runs as they are. Every run gets `group` (its config name) and `seed`."""
    if not seeds:
        return [{**run, "group": run["name"], "seed": run["options"].get("seed")} for run in runs]
    return [{"name": f"{run['name']}-s{seed}", "options": {**run["options"], "seed": seed}, "group": run["name"],
             "seed": seed} for seed in seeds for run in runs]


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

    from upo.training.run_folder import read_trainer_state

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


def _pm(entry: dict, key: str, pattern: str, scale: float = 1.0) -> str:
    if key not in entry:
        return "-"
    mean, sd = entry[key] * scale, entry.get(f"{key}_sd", 0.0) * scale
    return f"{pattern.format(mean)} ± {pattern.format(sd).lstrip('+')}"


def _ci(entry: dict, key: str, pattern: str, scale: float = 1.0) -> str:
    if key not in entry:
        return "-"
    ci = entry.get(f"{key}_ci90")
    shown = pattern.format(entry[key] * scale)
    return f"{shown} ({pattern.format(ci[0] * scale)}..{pattern.format(ci[1] * scale)})" if ci else shown


def format_seed_table(groups: list[dict], target: dict | None = None) -> str:
    """Markdown: one row per config run, the mean over its seeds ± the sd over seeds, and the gaps to DPO with their
    90% intervals over prompts and seeds."""
    header = ["run", "method", "seeds", "designer score", "preference", "win rate", "KL", "words",
              "value EV (held-out)", "designer vs DPO (std)", "win rate vs DPO (points)", "preference vs DPO"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in groups:
        ev = g.get("value_explained_variance")
        lines.append("| " + " | ".join([
            g["name"], g["family"], ",".join(str(s) for s in g["seeds"]), _pm(g, "designer_score", "{:+.3f}"),
            _pm(g, "preference_score", "{:.4f}"), _pm(g, "win_rate", "{:.1f}", 100), _pm(g, "kl", "{:.2f}"),
            _pm(g, "length_words", "{:.1f}"), "-" if ev is None else f"{ev:+.2f}", _ci(g, "gain_std", "{:+.2f}"),
            _ci(g, "win_rate_gap", "{:+.1f}", 100), _ci(g, "preference_gap", "{:+.4f}")]) + " |")
    if target and target.get("candidates"):
        lines.append(f"\nTarget over seeds (UPO's designer score >= +0.5 std above DPO's, the win-rate gap's 90% "
                     f"interval including 0, not dominated by any other method's mean): "
                     f"{'met' if target['met'] else 'not met'}.")
        for c in target["candidates"]:
            interval = "includes" if c["at_dpo_preference"] else "excludes"
            lines.append(f"* {c['name']}: designer {c['gain_std']:+.2f} std vs DPO, win-rate gap "
                         f"{100 * c['win_rate_gap']:+.1f} points (its interval {interval} 0), dominated by: "
                         f"{', '.join(c['dominated_by']) or 'none'}"
                         f"{' -> meets the target' if c['met'] else ''}")
    return "\n".join(lines)


def plot_seed_means(groups: list[dict], reference: dict | None, path: Path, styles: dict,
                    ylabel: str | None = None, title: str | None = None) -> None:
    """Preference score (y) against designer score (x): each config run's mean over seeds (large, with ±1 sd over
    seeds on both axes), each seed's own point (small, faint), and the Pareto front of the means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from upo.experiments.frontier.results import pareto_front

    groups = [g for g in groups if "designer_score" in g and "preference_score" in g]
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    points = [(g["designer_score"], g["preference_score"]) for g in groups]
    front = pareto_front(points)
    if len(front) > 1:
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "--", color="grey", lw=1,
                label="Pareto front of the means", zorder=1)
    labelled = set()
    for g, (x, y) in zip(groups, points):
        marker, color, size = styles.get(g["family"], ("o", "tab:gray", 70))
        ax.scatter(g["designer_score_per_seed"], g["preference_score_per_seed"], marker=marker, c=color,
                   s=size * 0.35, alpha=0.35, zorder=2, edgecolors="none")
        ax.errorbar([x], [y], xerr=[g["designer_score_sd"]], yerr=[g["preference_score_sd"]], fmt="none", ecolor=color,
                    elinewidth=0.8, capsize=2, zorder=2)
        edge = "black" if g["family"] == methods.DPO_FAMILY else "white"
        ax.scatter([x], [y], marker=marker, c=color, s=size, zorder=3, edgecolors=edge,
                   label=None if g["family"] in labelled else g["family"])
        labelled.add(g["family"])
        ax.annotate(g["name"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    if reference:
        ax.scatter([reference["designer_score"]], [reference["preference_score"]], marker="x", c="grey", s=60,
                   label="reference", zorder=2)
    seeds = max((len(g["seeds"]) for g in groups), default=0)
    ax.set_xlabel("designer score (weighted z of the objectives, mean over held-out prompts and seeds)")
    # wrapped: a scorer's description is longer than the plot is high
    ax.set_ylabel(textwrap.fill(f"{ylabel or 'preference score'} (mean over prompts and seeds)", 55))
    ax.set_title(title or f"Mean over {seeds} seeds (faint: each seed; bars: ±1 sd over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
