"""`upo score`'s statistics: does the preference data already encode a designer objective?"""

from __future__ import annotations

import statistics


def _describe(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    q = statistics.quantiles(values, n=10, method="inclusive") if len(values) > 1 else [values[0]] * 9
    return {
        "n": len(values), "mean": statistics.fmean(values), "std": statistics.pstdev(values),
        "p10": q[0], "p50": statistics.median(values), "p90": q[8],
    }


def reward_report(scores: dict[str, tuple[list, list]]) -> dict[str, dict]:
    """Per objective: chosen and rejected statistics, and how often chosen scores higher.

    `chosen_higher` is the fraction of pairs (where the objective applies to both responses) whose chosen
    response scores strictly higher; ties count one half. 0.5 means the labels ignore the objective: that is
    where UPO's designer term adds what DPO cannot learn from the pairs.
    """
    report = {}
    for name, (chosen, rejected) in scores.items():
        both = [(c, r) for c, r in zip(chosen, rejected) if c is not None and r is not None]
        wins = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in both)
        report[name] = {
            "chosen": _describe([c for c in chosen if c is not None]),
            "rejected": _describe([r for r in rejected if r is not None]),
            "pairs": len(both),
            "chosen_higher": wins / len(both) if both else float("nan"),
        }
    return report


def format_reward_report(report: dict[str, dict]) -> str:
    header = "| objective | response | n | mean | std | p10 | p50 | p90 |\n|---|---|---|---|---|---|---|---|"
    rows, verdicts = [header], []
    for name, r in report.items():
        for side in ("chosen", "rejected"):
            s = r[side]
            if s["n"]:
                rows.append(f"| {name} | {side} | {s['n']} | {s['mean']:.3f} | {s['std']:.3f} | "
                            f"{s['p10']:.3f} | {s['p50']:.3f} | {s['p90']:.3f} |")
            else:
                rows.append(f"| {name} | {side} | 0 | - | - | - | - | - |")
        verdicts.append(f"{name}: chosen scores higher in {100 * r['chosen_higher']:.1f}% of {r['pairs']} pairs")
    return "\n".join(rows) + "\n\n" + "\n".join(verdicts)
