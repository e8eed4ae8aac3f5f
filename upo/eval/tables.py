"""Markdown tables of `upo eval` summaries: one column per model (`side_by_side`), or one row per model
(`summary_table`, the frontier's)."""

from __future__ import annotations

import math
from collections.abc import Sequence

METRIC_LABELS = [
    ("designer_score", "designer score (weighted z, higher better)", "{:+.3f}"),
    ("preference_score", "preference score (the preference scorer's mean)", "{:.4f}"),
    ("win_rate", "win rate vs reference", "{:.1%}"),
    ("kl", "KL to reference (nats / reply)", "{:.2f}"),
    ("implicit_accuracy", "held-out implicit-reward accuracy", "{:.1%}"),
    ("length_words", "reply length (words)", "{:.1f}"),
]


def _fmt(value, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


def side_by_side(summaries: Sequence[dict]) -> str:
    """Markdown: one column per model, one row per metric (objectives first)."""
    names = [s["name"] for s in summaries]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    objectives = [k for k in summaries[0] if k.startswith("objective/")]
    for key in objectives:
        cells = " | ".join(_fmt(s.get(key), "{:.3f}") for s in summaries)
        lines.append(f"| {key.split('/', 1)[1]} (mean) | {cells} |")
    for key, label, pattern in METRIC_LABELS:
        lines.append(f"| {label} | " + " | ".join(_fmt(s.get(key), pattern) for s in summaries) + " |")
    return "\n".join(lines)


def summary_table(summaries: Sequence[dict], extra_columns: Sequence[str] = ()) -> str:
    """Markdown: one row per model."""
    objectives = [k for k in summaries[0] if k.startswith("objective/")]
    header = ["run", *extra_columns, *(k.split("/", 1)[1] for k in objectives), "designer score", "preference",
              "win rate", "KL", "implicit acc.", "words"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summaries:
        cells = [s["name"], *(str(s.get(c, "")) for c in extra_columns),
                 *(_fmt(s.get(k), "{:.3f}") for k in objectives),
                 _fmt(s["designer_score"], "{:+.3f}"), _fmt(s["preference_score"], "{:.4f}"),
                 _fmt(s["win_rate"], "{:.1%}"), _fmt(s["kl"], "{:.2f}"), _fmt(s.get("implicit_accuracy"), "{:.1%}"),
                 _fmt(s["length_words"], "{:.1f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
