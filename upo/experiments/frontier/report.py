"""The frontier's report: `frontier.json` (every summary and the options of every run), `frontier.md` (the
table and the target check), `frontier.png` (preference score against designer score, Pareto front drawn,
DPO marked) and `frontier.html` (all of it on one self-contained page, with every prompt's replies side by side:
`upo.eval.page`)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from upo import methods
from upo.eval.evaluate import finite_or_none
from upo.eval.page import frontier_page
from upo.eval.tables import summary_table
from upo.experiments.frontier.config import FrontierConfig
from upo.experiments.frontier.results import pareto_front
from upo.files import atomic_write_json, atomic_write_text

FRONTIER_JSON = "frontier.json"
FRONTIER_MARKDOWN = "frontier.md"
FRONTIER_PLOT = "frontier.png"
FRONTIER_PAGE = "frontier.html"
FRONTIER_RUNS_PLOT = "frontier_runs.png"  # with seeds: every run's own point (frontier.png shows the means)
FAMILY_STYLES = {"DPO": ("*", "black", 220), "UPO": ("o", "tab:blue", 70), "MODPO": ("s", "tab:orange", 70),
                 "KTO-UPO": ("o", "tab:cyan", 70), "KTO": ("v", "tab:green", 70), "RPO": ("^", "tab:olive", 70),
                 "aoPPO": ("D", "tab:red", 60), "DRO-V": ("P", "tab:purple", 80), "A-LOL": ("h", "tab:pink", 80),
                 "CSFT": ("X", "tab:brown", 80)}
OTHER_FAMILY_STYLE = ("o", "tab:gray", 70)


def one_line(s: dict) -> str:
    """A summary as one line of the frontier's log."""
    return (f"designer {s['designer_score']:+.3f}, preference {s['preference_score']:.4f}, win rate "
            f"{s['win_rate']:.1%}, KL {s['kl']:.2f}, {s['length_words']:.1f} words")


def write_report(config: FrontierConfig, results: dict) -> list[Path]:
    """Writes `frontier.json`, `frontier.md`, `frontier.html` and, once a run is finished, `frontier.png`; returns
    their paths."""
    out = Path(config.output_dir)
    written = [out / FRONTIER_JSON, out / FRONTIER_MARKDOWN, out / FRONTIER_PAGE]
    markdown = format_report(results)
    atomic_write_json(written[0], finite_or_none({"config": config.source, **results}))
    atomic_write_text(written[1], markdown + "\n")
    png = None
    if results["runs"] and results.get("seeds"):
        written.append(out / FRONTIER_PLOT)
        plot_seed_means(results["seeds"]["groups"], results["reference"], written[-1], FAMILY_STYLES,
                        results.get("preference_scorer"))
        png = written[-1].read_bytes()
        written.append(out / FRONTIER_RUNS_PLOT)
        plot_frontier(results, written[-1])
    elif results["runs"]:
        written.append(out / FRONTIER_PLOT)
        plot_frontier(results, written[-1])
        png = written[-1].read_bytes()
    atomic_write_text(written[2], frontier_page(results, png, markdown))
    return written


def format_report(results: dict) -> str:
    rows = ([{**results["reference"], "name": "reference"}] if results["reference"] else []) + \
           [{**r["summary"], "name": r["name"]} for r in results["runs"]]
    if not rows:
        return "No finished run yet."
    families = {r["name"]: r["family"] for r in results["runs"]}
    options = {r["name"]: ", ".join(f"{k}={v}" for k, v in r["options"].items()) for r in results["runs"]}
    for row in rows:
        row["method"] = families.get(row["name"], "-")
        row["options"] = options.get(row["name"], "-")
    lines = [summary_table(rows, extra_columns=("method", "options"))]
    if results.get("seeds"):  # the means over seeds first; each run's own row below
        lines.insert(0, format_seed_table(results["seeds"]["groups"], results["seeds"]["target"]) + "\n\nEach run:\n")
    target = results["target"]
    if target.get("candidates") is not None and not results.get("seeds"):  # over seeds: the means' target, above
        lines.append(f"\nTarget (UPO within 2 points of DPO's win rate, designer score >= +0.5 std above DPO's, "
                     f"not dominated by another method's run; 1 std = {target['unit_std']:.3f}): "
                     f"{'met' if target['met'] else 'not met'}.")
        for c in target["candidates"]:
            ci, gap_ci = c.get("gain_std_ci90"), c.get("win_rate_gap_ci90")
            gain_ci = f" (90% CI {ci[0]:+.2f}..{ci[1]:+.2f})" if ci else ""
            win_ci = f" (90% CI {100 * gap_ci[0]:+.1f}..{100 * gap_ci[1]:+.1f})" if gap_ci else ""
            lines.append(f"* {c['name']}: designer {c['gain_std']:+.2f} std vs DPO{gain_ci}, win rate "
                         f"{100 * c['win_rate_gap']:+.1f} points vs DPO{win_ci}, "
                         f"dominated by: {', '.join(c['dominated_by']) or 'no run'}"
                         f"{' -> meets the target' if c['met'] else ''}")
    return "\n".join(lines)


def plot_frontier(results: dict, path: Path, title: str | None = None) -> None:
    """Preference score (y) against designer score (x) for every run; Pareto front drawn; DPO marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    styles = FAMILY_STYLES
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    points = [(r["summary"]["designer_score"], r["summary"]["preference_score"]) for r in runs]
    front = pareto_front(points)
    if len(front) > 1:
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "--", color="grey", lw=1,
                label="Pareto front", zorder=1)
    for family in dict.fromkeys(r["family"] for r in runs):  # a family without a style of its own is drawn too
        marker, color, size = styles.get(family, OTHER_FAMILY_STYLE)
        members = [k for k, r in enumerate(runs) if r["family"] == family]
        ax.scatter([points[k][0] for k in members], [points[k][1] for k in members], marker=marker, c=color, s=size,
                   label=family, zorder=3, edgecolors="white" if family != methods.DPO_FAMILY else "black")
    for (x, y), r in zip(points, runs):
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    dpo = next((r for r in runs if r["family"] == methods.DPO_FAMILY), None)
    if dpo is not None and len(dpo.get("designer") or []) > 1 and len(dpo.get("preference") or []) > 1:
        import statistics

        # The noise of one point: one standard error of each mean over the prompts.
        n = len(dpo["designer"])
        ax.errorbar([dpo["summary"]["designer_score"]], [dpo["summary"]["preference_score"]],
                    xerr=[statistics.pstdev(dpo["designer"]) / n ** 0.5],
                    yerr=[statistics.pstdev(dpo["preference"]) / n ** 0.5], fmt="none", ecolor="black", elinewidth=0.8,
                    capsize=3, zorder=2, label=f"±1 s.e. over {n} prompts")
    if results.get("reference"):
        ref = results["reference"]
        ax.scatter([ref["designer_score"]], [ref["preference_score"]], marker="x", c="grey", s=60, label="reference",
                   zorder=2)
    ax.set_xlabel("designer score (weighted z of the objectives, mean over held-out prompts)")
    ax.set_ylabel(textwrap.fill(results.get("preference_scorer") or "preference score", 55))
    ax.set_title(title or "UPO and the baselines: preference against designer score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the points fill the axes
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------- over seeds


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
