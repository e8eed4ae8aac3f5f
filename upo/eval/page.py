"""`eval.html` and `frontier.html`: one self-contained page to look at a comparison.

Rendered with jinja2 from the templates in `upo/eval/templates` (`page.html.j2`, its stylesheet and script, and the
scatter plot `scatter.svg.j2`), autoescaped, from data: the settings, the tables (`upo.eval.tables.Table`: a header
and rows of cells, never Markdown), the plot and every prompt with each model's reply side by side and its scores.
Everything is inside the file (CSS, a few lines of JavaScript, the plot as inline SVG or a base64 PNG): it opens
offline, from a laptop or an artifact store, and fetches nothing. The prompt table sorts by any score (or a model's
gain over the reference) and filters by text, and keeps that view in the address
(`eval.html#sort=m1-preference&dir=desc&q=pizza`). Without JavaScript the page still shows everything, unsorted.

Local paths in the settings and tables are shown relative to the folder the page is written to (`relative_paths`), so
that a page moved with its run folder, or shared, names no machine's absolute paths.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from upo.eval.tables import Table, side_by_side_table

SCORES = (("preference", "preference", "{:.4f}"), ("win", "win vs reference", "{:.2g}"),
          ("designer", "designer", "{:+.3f}"), ("kl", "KL", "{:.2f}"))
PLOT_CAPTION = ("Lines through a model's point: the 90% intervals over the prompts of its gaps to the reference "
                "(designer across, preference up and down).")
# An absolute POSIX path inside a text: "/" at the start of a word (not in "a/b", "1/2", "://"), then no spaces.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?=[^\s/])[^\s,;'\"()\[\]|<>]*")


@dataclass
class ModelColumn:
    """One model's replies and per-prompt scores (`preference`, `win`, `designer`, `kl`: lists, None where unknown)."""

    name: str
    replies: list[str]
    scores: dict[str, list[float | None]] = field(default_factory=dict)
    objectives: dict[str, list[float | None]] = field(default_factory=dict)


@dataclass
class Section:
    """A part of the page above the plot: a heading, lines of text, a bulleted list, a table (each optional)."""

    heading: str = ""
    lines: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    table: Table | None = None

    def markdown(self) -> str:
        """The section as the Markdown report writes it (the heading left out: the report's text says it)."""
        text = "\n".join([*self.lines, *(f"* {item}" for item in self.items)])
        return "\n\n".join(part for part in (text, self.table.markdown() if self.table else "") if part)


def _fmt(value, pattern: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return pattern.format(value)


def _attr(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(float(value))


def relative_paths(text, folder: str | os.PathLike | None) -> str:
    """`text` with every absolute local path in it written relative to `folder` (`../data/eval.jsonl`); unchanged
    without a folder."""
    text = "" if text is None else str(text)
    if folder is None:
        return text
    base = os.path.abspath(folder)
    return ABSOLUTE_PATH.sub(lambda m: os.path.relpath(m.group(0), base), text)


def nice_ticks(low: float, high: float, count: int = 5) -> tuple[list[float], int]:
    """Ticks at round values (a multiple of 1, 2, 2.5 or 5 times a power of ten) from at or below `low` to at or above
    `high`, about `count` of them, and the number of decimals that shows them exactly."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"ticks of a non-finite range {low}..{high}")
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if round(step / power, 6) == 2.5 else 0)
    return [round(k * step, decimals + 2) for k in range(first, last + 1)], decimals


@dataclass
class PlotPoint:
    """A point of the eval page's scatter plot: `x`, `y` in data units, `kind` "reference" (a grey cross) or "model",
    and the 90% intervals of its gaps to the reference placed around it (data units), when known."""

    label: str
    x: float
    y: float
    kind: str = "model"
    x_interval: tuple[float, float] | None = None
    y_interval: tuple[float, float] | None = None


def scatter_plot(points: Sequence[PlotPoint], x_label: str, y_label: str, width: int = 640,
                 height: int = 360) -> dict | None:
    """Every coordinate of the scatter plot `scatter.svg.j2` draws, in pixels; None when no point is finite. The axes
    run from tick to tick (`nice_ticks`) over the points and their intervals."""
    points = [p for p in points if all(isinstance(v, (int, float)) and math.isfinite(v) for v in (p.x, p.y))]
    if not points:
        return None
    left, right, top, bottom = 70, 20, 20, 50
    xs = [v for p in points for v in (p.x, *(p.x_interval or ()))]
    ys = [v for p in points for v in (p.y, *(p.y_interval or ()))]
    x_ticks, x_decimals = nice_ticks(min(xs), max(xs))
    y_ticks, y_decimals = nice_ticks(min(ys), max(ys))
    (x0, x1), (y0, y1) = (x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1])
    inner_width, inner_height = width - left - right, height - top - bottom

    def sx(x):
        return round(left + (x - x0) / (x1 - x0) * inner_width, 1)

    def sy(y):
        return round(height - bottom - (y - y0) / (y1 - y0) * inner_height, 1)

    drawn = []
    for p in points:
        right_half = sx(p.x) > left + inner_width / 2  # labels point inwards, so none is cut at the edge
        drawn.append({"label": p.label, "kind": p.kind, "x": sx(p.x), "y": sy(p.y),
                      "x_interval": [sx(v) for v in p.x_interval] if p.x_interval else None,
                      "y_interval": [sy(v) for v in p.y_interval] if p.y_interval else None,
                      "label_x": round(sx(p.x) + (-8 if right_half else 8), 1),
                      "anchor": "end" if right_half else "start"})
    return {"width": width, "height": height, "left": left, "top": top, "inner_width": inner_width,
            "inner_height": inner_height, "right_x": left + inner_width, "bottom_y": height - bottom,
            "x_label": x_label, "y_label": y_label, "points": drawn,
            "x_ticks": [{"at": sx(t), "label": f"{t:.{x_decimals}f}"} for t in x_ticks],
            "y_ticks": [{"at": sy(t), "label": f"{t:.{y_decimals}f}"} for t in y_ticks]}


def prompt_rows(prompts: Sequence, reference_answers: Sequence[str | None] | None,
                columns: Sequence[ModelColumn]) -> tuple[list[dict], list[tuple[str, str]]]:
    """The per-prompt table's rows (index, prompt, reference answer, each model's reply with its score badges, and
    the scores the table sorts by), and the sort keys it offers (`(key, label)`)."""
    keys = [("index", "prompt #"), ("length", "prompt length")]
    baseline = next((c for c in columns if c.name == "reference"), None)
    for m, column in enumerate(columns):
        for score, label, _ in SCORES:
            values = column.scores.get(score) or []
            if any(v is not None for v in values) and not (score in ("win", "kl") and column is baseline):
                keys.append((f"m{m}-{score}", f"{column.name}: {label}"))
        if column is not baseline and baseline is not None:
            for score in ("preference", "designer"):
                if column.scores.get(score) and baseline.scores.get(score):
                    keys.append((f"m{m}-{score}-gain", f"{column.name}: {score} minus the reference's"))
        for name in column.objectives:
            keys.append((f"m{m}-obj-{name}", f"{column.name}: {name}"))
    rows = []
    for k, prompt in enumerate(prompts):
        text = prompt if isinstance(prompt, str) else " ".join(str(m.get("content", "")) for m in prompt)
        messages = prompt if isinstance(prompt, str) else [
            {"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in prompt]
        data = {"index": k, "length": len(text)}
        cells = []
        for m, column in enumerate(columns):
            badges = []
            for score, label, pattern in SCORES:
                values = column.scores.get(score) or []
                value = values[k] if k < len(values) else None
                data[f"m{m}-{score}"] = value
                if value is not None and not (score in ("win", "kl") and column is baseline):
                    badges.append({"score": score, "label": label, "value": _fmt(value, pattern)})
                if baseline is not None and column is not baseline and score in ("preference", "designer"):
                    base = (baseline.scores.get(score) or [None] * (k + 1))[k]
                    data[f"m{m}-{score}-gain"] = None if value is None or base is None else value - base
            for name, values in column.objectives.items():
                data[f"m{m}-obj-{name}"] = values[k] if k < len(values) else None
            cells.append({"reply": column.replies[k] if k < len(column.replies) else "", "badges": badges})
        rows.append({"index": k, "prompt": messages,
                     "reference_answer": reference_answers[k] if reference_answers else None,
                     "data": {key: _attr(value) for key, value in data.items()}, "cells": cells})
    return rows, keys


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("upo.eval", "templates"),
                              autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=False, lstrip_blocks=False)


def render_page(title: str, settings: Sequence[str], sections: Sequence[Section], plot: dict, prompts: Sequence,
                reference_answers: Sequence[str | None] | None, columns: Sequence[ModelColumn],
                data: dict | None = None, folder: str | os.PathLike | None = None) -> str:
    """The whole page (see the module docstring). `plot`: `{"svg": scatter_plot(...)}`, `{"png": base64 text, "alt":
    ...}` or `{"empty": a note}`. `data`, when given, is embedded as JSON for whoever wants it. `folder`: where the
    page is written; local paths in the settings and tables are shown relative to it."""
    rows, keys = prompt_rows(prompts, reference_answers, columns)
    payload = None
    if data is not None:  # "</" would end the script element early
        payload = json.dumps(data, allow_nan=False, default=str).replace("</", "<\\/")
    environment = _environment().overlay()
    environment.filters["relative"] = lambda text: relative_paths(text, folder)
    return environment.get_template("page.html.j2").render(
        title=title, settings=list(settings), sections=list(sections),
        plot={"svg": None, "png": None, "alt": "", "empty": "", "caption": "", **plot}, rows=rows, sort_keys=keys,
        model_names=[c.name for c in columns], data_json=payload)


def _gap_interval(summary: dict, level_key: str, gap_key: str) -> tuple[float, float] | None:
    """The 90% interval of a model's gap to the reference, placed around its own level (`level - gap + interval`)."""
    interval, gap, level = summary.get(f"{gap_key}_ci90"), summary.get(gap_key), summary.get(level_key)
    if not interval or gap is None or level is None or any(v is None for v in interval):
        return None
    return level - gap + interval[0], level - gap + interval[1]


def eval_page(report: dict, folder: str | os.PathLike | None = None) -> str:
    """`eval.html` from the report `upo eval` writes to `eval.json` (into `folder`)."""
    summaries = report["summaries"]
    names = [s["name"] for s in summaries]
    per_prompt = report["per_prompt"]
    columns = []
    for name in names:
        entries = [entry[name] for entry in per_prompt]
        objectives = sorted({k for e in entries for k in (e.get("objectives") or {})})
        columns.append(ModelColumn(
            name, [e["reply"] for e in entries],
            {score: [e.get(score) for e in entries] for score, _, _ in SCORES},
            {n: [(e.get("objectives") or {}).get(n) for e in entries] for n in objectives}))
    points = [PlotPoint(s["name"], s.get("designer_score"), s.get("preference_score"),
                        "reference" if s["name"] == "reference" else "model",
                        _gap_interval(s, "designer_score", "designer_gain"),
                        _gap_interval(s, "preference_score", "preference_gain")) for s in summaries]
    settings = [f"Reference: {report.get('reference_model')}", f"Data: {report.get('data')}",
                f"Decoding: {report.get('decoding')}", f"Preference scorer: {report.get('preference_scorer')}",
                f"Designer objectives standardised with {report.get('designer_scale_source')}"]
    summary = Section("Summary", ["Each model against the reference on the same prompts; the intervals are 90% over "
                                  "the prompts (one seed: they say nothing of another training seed)."],
                      table=side_by_side_table(summaries))
    plot = scatter_plot(points, "designer score (weighted z, mean over prompts)", "preference score")
    return render_page(f"upo eval: {', '.join(n for n in names if n != 'reference')} against the reference", settings,
                       [summary], {"svg": plot, "caption": PLOT_CAPTION} if plot else
                       {"empty": "No point to plot (the scores are undefined)."},
                       [e["prompt"] for e in per_prompt], [e.get("reference_answer") for e in per_prompt], columns,
                       data={"summaries": summaries}, folder=folder)


def frontier_page(results: dict, png: bytes | None, sections: Sequence[Section],
                  folder: str | os.PathLike | None = None) -> str:
    """`frontier.html` from `upo.experiments.frontier.results.collect_results`, the plot it drew and the report's
    sections (`upo.experiments.frontier.report.report_sections`: text and tables as data)."""
    columns = []
    reference = results.get("reference_per_prompt")
    if reference and reference.get("replies"):
        columns.append(ModelColumn("reference", reference["replies"],
                                   {"preference": reference.get("preference"), "designer": reference.get("designer")}))
    for run in results["runs"]:
        if run.get("replies"):
            columns.append(ModelColumn(run["name"], run["replies"],
                                       {"preference": run.get("preference"), "win": run.get("wins"),
                                        "designer": run.get("designer"), "kl": run.get("kl")}))
    plot = {"png": base64.b64encode(png).decode(), "alt": "preference score against designer score for every run"} \
        if png else {"empty": "No finished run yet."}
    prompts = results.get("prompts") or []
    settings = [f"Runs finished: {len(results['runs'])}",
                f"Preference: {results.get('preference_scorer') or 'preference score'}"]
    return render_page("upo frontier", settings, sections, plot, prompts, results.get("reference_answers"), columns,
                       folder=folder)

