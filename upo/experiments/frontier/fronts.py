"""Fronts, not points: each family's runs at several strengths as a curve of designer score against preference score.

A family (`upo.methods.family_of`: DPO, UPO, MODPO, DRO-V, A-LOL, ...) trained at several strengths (UPO's
`designer_target` or `aw_temperature`, MODPO's `modpo_weight`, DRO-V's and A-LOL's `alpha`) gives one point per run,
(designer score, preference score), each the mean over the seeds. Higher is better on both axes, so its front is the
upper right of its points (`pareto_front`), drawn as straight lines between them (`FrontCurve`). Read off each front:

* the designer gain at DPO's preference (`designer_at_preference`): the front's designer score where its preference
  equals DPO's (linear interpolation between the two points that bracket it), minus DPO's. No extrapolation: when every
  point has more preference than DPO, the best designer score among them is a lower bound ("at least"); when every
  point has less, the front never reaches DPO's preference, and there is no number;
* whether it dominates a point (`front_dominates`): some point of the interpolated front above and to the right;
* the area it dominates (`dominated_area`, the 2-D hypervolume) above a reference point common to the task.

The gain's interval (`gain_interval`) inverts the seeds-and-prompts interval of every gap
(`upo.experiments.frontier.intervals`) on the reading's defining equation (Fieller's interval for a ratio). A lower
bound is shown only where its point's preference is shown above DPO's, and "never reaches" only where the front's top
point is shown below it; either is otherwise reported as not shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from upo.experiments.frontier.intervals import LEVEL, finite_columns, seeds_prompts_mean

INTERPOLATED = "interpolated"  # the front crosses DPO's preference: one number
LOWER_BOUND = "lower_bound"  # every point of the front has more preference than DPO: at least the best designer score
NEVER_REACHES = "never_reaches"  # every point has less preference than DPO: no number


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (>= on both axes, > on one), by increasing x."""
    front = [i for i, (x, y) in enumerate(points)
             if not any(x2 >= x and y2 >= y and (x2 > x or y2 > y) for x2, y2 in points)]
    return sorted(front, key=lambda i: points[i][0])


@dataclass(frozen=True)
class FrontReading:
    """Where a front meets a preference score: `designer` is the front's designer score there (INTERPOLATED), the
    best designer score of the front (LOWER_BOUND), or None (NEVER_REACHES). `left` and `right` are the indices of
    the two front points it lies between (equal at a point, or for a lower bound), `share` how far from `left`
    towards `right` (0..1): designer = (1 - share) * x[left] + share * x[right]."""

    kind: str
    designer: float | None
    left: int | None = None
    right: int | None = None
    share: float = 0.0


def front_curve(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The front's points in order of increasing designer score (so decreasing preference), repeated points once."""
    return list(dict.fromkeys(points[i] for i in pareto_front(points)))


def designer_at_preference(front: Sequence[tuple[float, float]], preference: float) -> FrontReading:
    """The designer score of the front (`front_curve`'s points, x increasing and y decreasing) at `preference`.

    Indices in the reading are positions in `front`. Between two points the front is the straight line joining
    them; it is not extended past its first or last point.
    """
    if not front:
        raise ValueError("an empty front has no designer score")
    top, bottom = front[0][1], front[-1][1]
    if preference > top:
        return FrontReading(NEVER_REACHES, None)
    if preference < bottom:
        return FrontReading(LOWER_BOUND, front[-1][0], len(front) - 1, len(front) - 1)
    for k, (x, y) in enumerate(front):
        if y == preference:
            return FrontReading(INTERPOLATED, x, k, k)
        x_next, y_next = front[k + 1]
        if y > preference > y_next:
            share = (y - preference) / (y - y_next)
            return FrontReading(INTERPOLATED, x + share * (x_next - x), k, k + 1, share)
    raise AssertionError("unreachable: preference lies between the front's first and last points")


def front_dominates(front: Sequence[tuple[float, float]], point: tuple[float, float]) -> bool:
    """Whether some point of the front (its points and the straight lines between them) is above and to the right
    of `point`: at least as high on both axes and higher on one."""
    x, y = point
    if not front or y > front[0][1]:
        return False
    reading = designer_at_preference(front, y)
    if reading.kind == LOWER_BOUND:  # every point of the front has more preference: its best designer score
        return reading.designer >= x
    # The front's points with preference >= y reach designer scores up to reading.designer, at preference y itself.
    return reading.designer > x


def dominated_area(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """The area of the region the points dominate above and to the right of `reference` (2-D hypervolume): the union
    of the rectangles from `reference` to each point. Points not above and to the right of it add nothing."""
    x0, y0 = reference
    above = [(x, y) for x, y in points if x > x0 and y > y0]
    area, left = 0.0, x0
    for x, y in front_curve(above):  # x increasing, y decreasing: each adds the strip from the previous x to its own
        area += (x - left) * (y - y0)
        left = x
    return area


# ------------------------------------------------------------------------------------------- a family's front


def strengths(options: Sequence[dict], defaults: dict | None = None) -> list[str]:
    """Each run's strength, as the options that differ between the runs of its family ("aw_temperature=0.5"); ""
    for a family of one run. An option a run leaves unset shows its value in `defaults` ("alpha=1.0 (default)")."""
    keys = sorted({k for o in options for k in o} - {"seed"})
    varying = [k for k in keys if len({repr(o.get(k)) for o in options}) > 1]
    defaults = defaults or {}

    def shown(o: dict, k: str) -> str:
        if k in o:
            return f"{k}={o[k]}"
        return f"{k}={defaults[k]} (default)" if k in defaults else f"{k} unset"

    return [", ".join(shown(o, k) for k in varying) for o in options]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _tables(members: Sequence[dict], seeds: Sequence, key: str) -> list | None:
    """Per member, its (seeds x prompts) table of the per-prompt `key` ("designer", "preference"), or None when a
    run lacks them or the runs were evaluated on different numbers of prompts."""
    tables = [[(m["by_seed"][s].get(key) or []) for s in seeds] for m in members]
    lengths = {len(row) for table in tables for row in table}
    return tables if len(lengths) == 1 and 0 not in lengths else None


def family_front(family: str, groups: Sequence[dict], dpo: dict | None, unit: float,
                 level: float | None = None, defaults: dict | None = None) -> dict:
    """A family's front, and the designer gain read off it at DPO's preference with its interval.

    Args:
        family: its name (`upo.methods.family_of`).
        groups: its config runs, each `{"name", "options", "by_seed": {seed: run}}`, a run as `collect_results` gives
            it (its `summary` and the per-prompt `designer` and `preference` lists).
        dpo: the DPO config run the gains are measured from, in the same form (None: no gain).
        unit: the designer gain's unit (std of the reference's designer score over the prompts).
        level: of the interval (`LEVEL` by default).
        defaults: the options' defaults, to name a strength a run leaves unset (`strengths`).

    Every number is over the seeds that all of the family's runs finished, and DPO too when it shares some: each
    point is the mean over those seeds of its run's (designer score, preference score). The gain's interval is
    `gain_interval`'s; which two points bracket DPO's preference is decided by the means. A lower bound (or a front
    that never reaches DPO's preference) has `shown` True only where the preference gap of the front's last (first)
    point to DPO has a `level` interval above (below) 0, False where it has not, None without per-prompt scores.
    """
    level = LEVEL if level is None else level
    seeds = [s for s in groups[0]["by_seed"] if all(s in g["by_seed"] for g in groups)]
    paired = [s for s in seeds if dpo is not None and s in dpo["by_seed"]]
    seeds = paired or seeds
    labels = strengths([g["options"] for g in groups], defaults)
    points = [(_mean([g["by_seed"][s]["summary"]["designer_score"] for s in seeds]),
               _mean([g["by_seed"][s]["summary"]["preference_score"] for s in seeds])) for g in groups] if seeds else []
    on_front = [i for i in pareto_front(points) if points[i] not in points[:i]]  # a repeated point once
    out = {"family": family, "seeds": seeds, "dpo": dpo["name"] if dpo and paired else None,
           "points": [{"name": g["name"], "strength": label, "designer_score": x, "preference_score": y,
                       "on_front": i in on_front} for i, (g, label, (x, y)) in enumerate(zip(groups, labels, points))],
           "front": [groups[i]["name"] for i in on_front], "gain": None}
    if not paired:
        return out
    front = [points[i] for i in on_front]
    dpo_x = _mean([dpo["by_seed"][s]["summary"]["designer_score"] for s in seeds])
    dpo_y = _mean([dpo["by_seed"][s]["summary"]["preference_score"] for s in seeds])
    reading = designer_at_preference(front, dpo_y)
    gain = {"kind": reading.kind, "dpo_point": [dpo_x, dpo_y], "gain_std": None, "interval": None, "shown": None}
    out["gain"] = gain
    if reading.kind == NEVER_REACHES:  # shown where the front's top point is shown below DPO's preference
        preference = _tables([groups[on_front[0]], dpo], seeds, "preference")
        if preference is not None:
            top, base = finite_columns(preference)
            estimate = seeds_prompts_mean(top - base)
            if estimate is not None:
                gain["preference_gap_interval"] = estimate.interval(level)
                gain["shown"] = gain["preference_gap_interval"][1] < 0
        return out
    gain["gain_std"] = (reading.designer - dpo_x) / unit
    gain["between"] = list(dict.fromkeys([groups[on_front[reading.left]]["name"],
                                          groups[on_front[reading.right]]["name"]]))
    members = [groups[i] for i in on_front] + [dpo]
    designer, preference = _tables(members, seeds, "designer"), _tables(members, seeds, "preference")
    if designer is None or preference is None:
        return out
    tables = finite_columns(designer + preference)
    k = len(members)
    ends = (reading.left, reading.right, k - 1)  # L, R, DPO: positions in `members`
    gain["interval"] = gain_interval([tables[i] for i in ends], [tables[k + i] for i in ends], gain["gain_std"],
                                     unit, level)
    if reading.kind == LOWER_BOUND:  # a bound only where its point is shown above DPO's preference
        estimate = seeds_prompts_mean(tables[k + reading.right] - tables[2 * k - 1])
        if estimate is not None:
            gain["preference_gap_interval"] = estimate.interval(level)
            gain["shown"] = gain["preference_gap_interval"][0] > 0
    return out


UNBOUNDED = 1e3  # std: an interval end further than this from the estimate is reported as no bound


def gain_interval(designer: Sequence, preference: Sequence, gain: float, unit: float, level: float) -> list[float]:
    """The `level` interval of the designer gain at DPO's preference read between two points of a front, from the
    (seeds x prompts) tables of the designer and the preference scores of the left point L, the right point R and
    DPO D (`designer` and `preference`, each `[L, R, D]`; L = R at a point of the front, or for a lower bound).

    At a point it is the interval of the gap x_L - x_D (`seeds_prompts_mean`). Between two points the gain
    g is the root of the bilinear F(g) = (x_L - x_D - g unit) (y_L - y_R) + (x_R - x_L) (y_L - y_D), and the interval
    is the set of g that the seeds-and-prompts interval of F (linearised at the means) does not reject: Fieller's
    interval for a ratio, which widens, and at the limit opens (an end at -inf or +inf), as the two points' preference
    scores become hard to tell apart, where the delta method's interval stays narrow and misses (bench/
    interval_coverage.py). Ends further than `UNBOUNDED` std from the gain are reported as infinite.
    """
    import math

    import numpy as np
    from scipy.optimize import brentq

    X = [np.asarray(t, dtype=float) for t in designer]
    Y = [np.asarray(t, dtype=float) for t in preference]
    if X[0] is X[1] or np.array_equal(X[0], X[1]) and np.array_equal(Y[0], Y[1]):
        estimate = seeds_prompts_mean((X[0] - X[2]) / unit)
        return estimate.interval(level, center=gain) if estimate else None
    (x_l, x_r, x_d), (y_l, y_r, y_d) = [float(t.mean()) for t in X], [float(t.mean()) for t in Y]
    fixed = (y_d - y_r) * X[0] + (y_l - y_d) * X[1] - (y_l - y_r) * X[2] - (x_r - x_l) * Y[2]

    def room(g: float) -> float:  # > 0 where g is not rejected
        estimate = seeds_prompts_mean(fixed + (x_r - x_d - g * unit) * Y[0] - (x_l - x_d - g * unit) * Y[1])
        return estimate.half_width(level) - abs((gain - g) * unit * (y_l - y_r))

    if room(gain) <= 0:
        return [gain, gain]
    ends = []
    for sign in (-1.0, 1.0):
        step, inside = 1e-3, gain
        while abs(step) <= UNBOUNDED and room(gain + sign * step) > 0:
            inside, step = gain + sign * step, 2 * step
        if step > UNBOUNDED:
            ends.append(sign * math.inf)
            continue
        ends.append(brentq(room, inside, gain + sign * step, xtol=1e-6))
    return ends
