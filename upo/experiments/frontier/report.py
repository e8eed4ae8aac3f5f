"""The frontier's report: `frontier.json` (every summary and the options of every run, the fronts and the target),
`frontier.md` (each family's front with its designer gain at DPO's preference and its area, the declared target's
verdict, each config run against DPO, each run), `frontier.png` (preference score against designer score: each
family's front as a line through its points, with intervals; DPO's preference marked) and `frontier.html` (all of it
on one self-contained page, with every prompt's replies side by side: `upo.eval.page`)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from upo import methods
from upo.eval.evaluate import finite_or_none
from upo.eval.page import Section, frontier_page
from upo.eval.tables import Table, summary_rows
from upo.experiments.frontier.config import FrontierConfig
from upo.experiments.frontier.fronts import INTERPOLATED, LOWER_BOUND, NEVER_REACHES, pareto_front
from upo.experiments.frontier.target import format_interval
from upo.files import atomic_write_json, atomic_write_text

FRONTIER_JSON = "frontier.json"
FRONTIER_MARKDOWN = "frontier.md"
FRONTIER_PLOT = "frontier.png"
FRONTIER_PAGE = "frontier.html"
FRONTIER_RUNS_PLOT = "frontier_runs.png"  # with seeds: every run's own point (frontier.png shows the means)
IN_STD = "std of the reference's designer score over the prompts"
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
    sections = report_sections(results)
    markdown = "\n\n".join(section.markdown() for section in sections)
    atomic_write_json(written[0], finite_or_none({"config": config.source, **results}))
    atomic_write_text(written[1], markdown + "\n")
    png = None
    if results["runs"]:
        written.append(out / FRONTIER_PLOT)
        plot_fronts(results, written[-1])
        png = written[-1].read_bytes()
    if results["runs"] and results.get("seeds"):
        written.append(out / FRONTIER_RUNS_PLOT)
        plot_frontier(results, written[-1])
    atomic_write_text(written[2], frontier_page(results, png, sections, folder=out))
    return written


def format_report(results: dict) -> str:
    """The report in Markdown: the fronts, the declared target's verdict, each config run against DPO (over its
    seeds), and each run."""
    return "\n\n".join(section.markdown() for section in report_sections(results))


def report_sections(results: dict) -> list[Section]:
    """The report as data (text and tables), which the Markdown (`format_report`) and `frontier.html` both render:
    the fronts, the declared target's verdict, each config run against DPO (over its seeds), and each run."""
    rows = ([{**results["reference"], "name": "reference"}] if results["reference"] else []) + \
           [{**r["summary"], "name": r["name"]} for r in results["runs"]]
    if not rows:
        return [Section(lines=["No finished run yet."])]
    families = {r["name"]: r["family"] for r in results["runs"]}
    options = {r["name"]: ", ".join(f"{k}={v}" for k, v in r["options"].items()) for r in results["runs"]}
    for row in rows:
        row["method"] = families.get(row["name"], "-")
        row["options"] = options.get(row["name"], "-")
    each_run = summary_rows(rows, extra_columns=("method", "options"))
    if not results["runs"]:
        return [Section("Each run", table=each_run)]
    sections = [fronts_section(results)]
    if results.get("target"):
        sections.append(target_section(results["target"]))
    over = ("over its seeds (mean ± sd over seeds), and against DPO of the same seed with 90% intervals over seeds and "
            "prompts" if results.get("seeds") else "against DPO, with 90% intervals over the prompts (one seed: they "
            "say nothing of another seed)")
    sections.append(Section("Each config run against DPO", [f"Each config run {over}; designer gains in {IN_STD}:"],
                            table=seed_table(results.get("groups") or [])))
    sections.append(Section("Each run", ["Each run:"], table=each_run))
    return sections


def _point(point: dict) -> str:
    strength = f" [{point['strength']}]" if point.get("strength") else ""
    return f"{point['name']}{strength} {point['designer_score']:+.3f}, {point['preference_score']:.4f}"


def _front_gain(front: dict) -> str:
    gain = front.get("gain")
    if front["family"] == methods.DPO_FAMILY and len(front["points"]) == 1:
        return "0: the gains are measured from it"
    if not gain:
        return "-"
    dpo_preference = f"DPO's {gain['dpo_point'][1]:.4f}"
    preference = gain.get("preference_gap_interval")
    if gain["kind"] == NEVER_REACHES:
        name = front["front"][0]
        gap = f"{name}'s preference vs DPO {format_interval(preference, '{:+.4f}')}" if preference else ""
        if gain.get("shown") is False:
            return f"not read: every point has less preference than {dpo_preference}, not beyond the noise ({gap})"
        return f"none: every point has less preference than {dpo_preference}" + (f" ({gap})" if gap else "")
    interval = gain.get("interval")
    value = f"{gain['gain_std']:+.2f}" + (f" ({format_interval(interval)})" if interval else "")
    if gain["kind"] == LOWER_BOUND:
        name = gain["between"][0]
        gap = f"{name}'s preference vs DPO {format_interval(preference, '{:+.4f}')}" if preference else ""
        if gain.get("shown") is False:
            return (f"not read: every point has more preference than {dpo_preference}, not beyond the noise ({gap}); "
                    f"{name}, with the most designer, at {value}")
        return f"at least {value}, at {name}: every point has more preference than {dpo_preference}" + (
            f" ({gap})" if gap else "")
    if len(gain["between"]) == 1:
        return f"{value}, at {gain['between'][0]}"
    return f"{value}, between {gain['between'][0]} and {gain['between'][1]}"


def format_fronts(results: dict) -> str:
    """Markdown: `fronts_section`."""
    return fronts_section(results).markdown()


def fronts_section(results: dict) -> Section:
    """Per family its front (the points no other point of the family dominates, by designer score), its
    other points, its designer gain at DPO's preference with the interval, and its area."""
    unit = results.get("reference_designer_std") or 1.0
    nadir = results.get("area_reference")
    where = (f"above designer {nadir[0]:+.2f} std and preference {nadir[1]:.4f}, the lowest of each over the reference "
             "model and every point (compare areas within this report only)") if nadir else "-"
    lines = [f"Fronts: a point per config run (designer score, preference score; with seeds, the mean over the seeds "
             f"every run of the family and DPO finished); the front joins the points no other point of the family "
             f"dominates. The designer gain at DPO's preference is read off the front by linear interpolation, never "
             f"extrapolated (in {IN_STD}, {unit:.3f}; 90% interval over seeds and prompts, Fieller's where it is "
             f"interpolated; an end the data do not bound is inf). The area is what the family's points dominate "
             f"(designer in std x preference) {where}."]
    header = ["method", "seeds", "front, by designer score (designer, preference)", "off the front",
              "designer gain at DPO's preference (std)", "area"]
    rows = []
    for front in results.get("fronts") or []:
        by_name = {p["name"]: p for p in front["points"]}
        on = [_point(by_name[name]) for name in front["front"]]
        off = [_point(p) for p in front["points"] if not p["on_front"]]
        seeds = ",".join("-" if s is None else str(s) for s in front["seeds"]) or "-"
        area = "-" if front.get("area") is None else f"{front['area']:.4f}"
        rows.append([front["family"], seeds, " -> ".join(on) or "-", "; ".join(off) or "-", _front_gain(front), area])
    return Section("Fronts", lines, table=Table(header, rows, [False] * 5 + [True]))


def format_target(target: dict) -> str:
    """Markdown: `target_section`."""
    return target_section(target).markdown()


def target_section(target: dict) -> Section:
    """The declared target, its verdict, and each condition with its numbers."""
    return Section("Target", [f"Target (declared in the config): {target['target']}. Verdict: {target['verdict']}."],
                   [f"{c['name']}: {c['outcome']}. {c['detail']}." for c in target["conditions"]])


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
    _finish_plot(ax, results)
    ax.set_title(title or "UPO and the baselines: preference against designer score")
    _save_plot(fig, path)


# ------------------------------------------------------------------------------------------- over seeds


def _pm(entry: dict, key: str, pattern: str, scale: float = 1.0) -> str:
    if key not in entry:
        return "-"
    shown = pattern.format(entry[key] * scale)
    if len(entry.get("seeds") or []) < 2:
        return shown
    return f"{shown} ± {pattern.format(entry.get(f'{key}_sd', 0.0) * scale).lstrip('+')}"


def _ci(entry: dict, key: str, pattern: str, scale: float = 1.0) -> str:
    if key not in entry:
        return "-"
    ci = entry.get(f"{key}_ci90")
    shown = pattern.format(entry[key] * scale)
    return f"{shown} ({pattern.format(ci[0] * scale)}..{pattern.format(ci[1] * scale)})" if ci else shown


def format_seed_table(groups: list[dict]) -> str:
    """Markdown: `seed_table`."""
    return seed_table(groups).markdown()


def seed_table(groups: list[dict]) -> Table:
    """One row per config run, the mean over its seeds ± the sd over seeds (a number alone with one seed),
    and the gaps to DPO of the same seed with their 90% intervals (`upo.experiments.frontier.intervals`)."""
    header = ["run", "method", "seeds", "designer score", "preference", "win rate", "KL", "words",
              "value EV (held-out)", "designer vs DPO (std)", "win rate vs DPO (points)", "preference vs DPO"]
    rows = []
    for g in groups:
        ev = g.get("value_explained_variance")
        rows.append([
            g["name"], g["family"], ",".join("-" if s is None else str(s) for s in g["seeds"]),
            _pm(g, "designer_score", "{:+.3f}"), _pm(g, "preference_score", "{:.4f}"),
            _pm(g, "win_rate", "{:.1f}", 100), _pm(g, "kl", "{:.2f}"), _pm(g, "length_words", "{:.1f}"),
            "-" if ev is None else f"{ev:+.2f}", _ci(g, "gain_std", "{:+.2f}"), _ci(g, "win_rate_gap", "{:+.1f}", 100),
            _ci(g, "preference_gap", "{:+.4f}")])
    return Table(header, rows, [False] * 3 + [True] * (len(header) - 3))


def plot_fronts(results: dict, path: Path, title: str | None = None) -> None:
    """Preference score (y) against designer score (x): each family's points (filled on its front, hollow off it)
    with the 90% intervals of their gaps to DPO on both axes, its front as a line through its points, where it meets
    DPO's preference (a tick), each seed's own point (faint, with seeds), DPO's preference (dotted) and the
    reference model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = results.get("reference_designer_std") or 1.0
    groups = {g["name"]: g for g in results.get("groups") or []}
    fig, ax = plt.subplots(figsize=(9.5, 5.4))
    dpo_line, bands = None, []
    for front in results.get("fronts") or []:
        marker, color, size = FAMILY_STYLES.get(front["family"], OTHER_FAMILY_STYLE)
        by_name = {p["name"]: p for p in front["points"]}
        curve = [by_name[name] for name in front["front"]]
        if len(curve) > 1:
            ax.plot([p["designer_score"] for p in curve], [p["preference_score"] for p in curve], "-", color=color,
                    lw=1.5, alpha=0.8, zorder=2)
        for k, p in enumerate(front["points"]):
            x, y, g = p["designer_score"], p["preference_score"], groups.get(p["name"], {})
            if len(g.get("seeds") or []) > 1:
                ax.scatter(g["designer_score_per_seed"], g["preference_score_per_seed"], marker=marker, c=color,
                           s=size * 0.3, alpha=0.3, zorder=1, edgecolors="none")
            xerr, yerr = _error(g, "gain_std", unit), _error(g, "preference_gap", 1.0)
            if xerr or yerr:
                ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="none", ecolor=color, elinewidth=0.8, capsize=2,
                            zorder=2)
            edge = "black" if front["family"] == methods.DPO_FAMILY else color
            ax.scatter([x], [y], marker=marker, s=size, zorder=3, edgecolors=edge, linewidths=1.2,
                       c=color if p["on_front"] else "white", label=front["family"] if k == 0 else None)
            ax.annotate(p["name"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        gain = front.get("gain") or {}
        if gain.get("kind") == INTERPOLATED:  # where the front meets DPO's preference, and the gain's interval
            dpo_x, dpo_y = gain["dpo_point"]
            at = dpo_x + gain["gain_std"] * unit
            ax.plot([at], [dpo_y], marker="|", ms=14, mew=2, color=color, zorder=4)
            low, high = gain.get("interval") or (gain["gain_std"], gain["gain_std"])
            bands.append(([dpo_x + low * unit, dpo_x + high * unit], dpo_y, color))
        if gain.get("dpo_point"):
            dpo_line = gain["dpo_point"][1]
    xlim = ax.get_xlim()
    for xs, y, color in bands:  # an end the data do not bound runs to the edge of the plot
        ax.plot([min(max(x, xlim[0]), xlim[1]) for x in xs], [y, y], "-", color=color, lw=5, alpha=0.3,
                solid_capstyle="butt", zorder=1)
    ax.set_xlim(xlim)
    if dpo_line is not None:
        ax.axhline(dpo_line, ls=":", color="black", lw=0.8, zorder=0, label="DPO's preference (|: a front meets it)")
    _finish_plot(ax, results)
    seeds = {run.get("seed") for run in results.get("runs") or []}  # that finished, not the config's
    over = f"mean over {len(seeds)} seeds, faint: each seed" if len(seeds) > 1 else "one seed"
    ax.set_title(title or f"Each family's front ({over}; hollow: off its front)\nbars: 90% interval of each point's "
                 "gap to DPO; band at DPO's preference: the gain's 90% interval", fontsize=9)
    _save_plot(fig, path)


def _finish_plot(ax, results: dict) -> None:
    """What both plots draw last: the reference's point, the axes' labels, the grid and the legend."""
    if results.get("reference"):
        ref = results["reference"]
        ax.scatter([ref["designer_score"]], [ref["preference_score"]], marker="x", c="grey", s=60, label="reference",
                   zorder=2)
    ax.set_xlabel("designer score (weighted z of the objectives, mean over held-out prompts)")
    ax.set_ylabel(textwrap.fill(results.get("preference_scorer") or "preference score", 55))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the points fill the axes


def _save_plot(fig, path: Path) -> None:
    import matplotlib.pyplot as plt  # imported already by the plot that calls it

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _error(group: dict, key: str, scale: float) -> list | None:
    """Matplotlib's [[below], [above]] of a point: the interval of its gap to DPO, in the axis' units, around it."""
    interval = group.get(f"{key}_ci90")
    if not interval or key not in group:
        return None
    return [[max(0.0, (group[key] - interval[0]) * scale)], [max(0.0, (interval[1] - group[key]) * scale)]]
