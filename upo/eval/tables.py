"""Tables of `upo eval` summaries: one column per model (`side_by_side`), or one row per model (`summary_table`, the
frontier's). Each is built as data (`Table`: a header and rows of text cells), which the Markdown (`Table.markdown`)
and the HTML pages (`upo.eval.page`) both render.

Wherever a model is compared with the reference, the comparison carries its 90% interval over the prompts
(`upo.eval.metrics.gaps_to_reference`): the win rate, and the designer and preference scores' gaps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

METRIC_LABELS = [
    ("designer_score", "designer score (weighted z, higher better)", "{:+.3f}"),
    ("preference_score", "preference score (the preference scorer's mean)", "{:.4f}"),
    ("win_rate", "win rate vs reference (90% interval over prompts)", "{:.1%}"),
    ("designer_gain", "designer score minus the reference's (90% interval)", "{:+.3f}"),
    ("preference_gain", "preference score minus the reference's (90% interval)", "{:+.4f}"),
    ("kl", "KL to reference (nats / reply)", "{:.2f}"),
    ("implicit_accuracy", "held-out implicit-reward accuracy", "{:.1%}"),
    ("length_words", "reply length (words)", "{:.1f}"),
]
WITH_INTERVAL = {"win_rate": "win_rate_ci90", "designer_gain": "designer_gain_ci90",
                 "preference_gain": "preference_gain_ci90"}
OPTIONAL = ("designer_gain", "preference_gain")  # rows shown only when some model has them


@dataclass
class Table:
    """A table as data: `header` and `rows` of text cells; `numeric[i]` when column i holds numbers (right-aligned
    in a page)."""

    header: list[str]
    rows: list[list[str]]
    numeric: list[bool] = field(default_factory=list)

    def markdown(self) -> str:
        def cell(text) -> str:
            return " ".join(str(text).split()).replace("|", "\\|")

        lines = ["| " + " | ".join(cell(c) for c in self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines)


def _fmt(value, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


def with_interval(summary: dict, key: str, pattern: str) -> str:
    """`summary[key]` formatted, followed by its 90% interval `(low..high)` where the summary has one."""
    shown = _fmt(summary.get(key), pattern)
    interval = summary.get(WITH_INTERVAL.get(key, ""))
    if shown == "-" or not interval or any(v is None for v in interval):
        return shown
    return f"{shown} ({pattern.format(interval[0])}..{pattern.format(interval[1])})"


def side_by_side_table(summaries: Sequence[dict]) -> Table:
    """One column per model, one row per metric (objectives first); the reference's own gaps are "-"."""
    names = [s["name"] for s in summaries]
    rows = []
    objectives = [k for k in summaries[0] if k.startswith("objective/")]
    for key in objectives:
        rows.append([f"{key.split('/', 1)[1]} (mean)", *(_fmt(s.get(key), "{:.3f}") for s in summaries)])
    for key, label, pattern in METRIC_LABELS:
        if key in OPTIONAL and not any(s.get(key) is not None for s in summaries):
            continue
        rows.append([label, *(with_interval(s, key, pattern) for s in summaries)])
    return Table(["metric", *names], rows, [False, *(True for _ in names)])


def side_by_side(summaries: Sequence[dict]) -> str:
    """Markdown: one column per model, one row per metric (objectives first)."""
    return side_by_side_table(summaries).markdown()


def summary_rows(summaries: Sequence[dict], extra_columns: Sequence[str] = ()) -> Table:
    """One row per model (the frontier's "each run")."""
    objectives = [k for k in summaries[0] if k.startswith("objective/")]
    header = ["run", *extra_columns, *(k.split("/", 1)[1] for k in objectives), "designer score", "preference",
              "win rate vs reference (90% interval)", "KL", "implicit acc.", "words"]
    rows = []
    for s in summaries:
        rows.append([s["name"], *(str(s.get(c, "")) for c in extra_columns),
                     *(_fmt(s.get(k), "{:.3f}") for k in objectives),
                     _fmt(s["designer_score"], "{:+.3f}"), _fmt(s["preference_score"], "{:.4f}"),
                     with_interval(s, "win_rate", "{:.1%}"), _fmt(s["kl"], "{:.2f}"),
                     _fmt(s.get("implicit_accuracy"), "{:.1%}"), _fmt(s["length_words"], "{:.1f}")])
    numeric = [False, *(False for _ in extra_columns), *(True for _ in header[1 + len(extra_columns):])]
    return Table(header, rows, numeric)


def summary_table(summaries: Sequence[dict], extra_columns: Sequence[str] = ()) -> str:
    """Markdown: one row per model."""
    return summary_rows(summaries, extra_columns).markdown()
