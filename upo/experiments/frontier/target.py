"""The target a user declares (`target:` in the frontier config; none by default), and the one rule that judges it,
for one seed and for several.

    target:
      family: UPO                 # the family judged
      run: upo                    # optional: one of its runs (a config run's name), judged as a point; else its front
      preference_margin: 0.01     # "at DPO's preference": within +-margin of DPO's preference score, shown by TOST
      min_gain: 0.5               # optional: designer gain at DPO's preference, in std, at least this
      gain_at_least: [DRO-V, MODPO]            # optional: that gain at least each of these families' (off their fronts)
      not_dominated_by: [MODPO, DRO-V, A-LOL]  # optional: no point of these families' fronts above and to the right
      min_seeds: 3                # optional (1): judged over at least this many seeds

Declare it before the runs: the margin is what "equal preference" means, and a margin chosen after seeing the
numbers tests nothing. `judge_target` gives each condition `yes`, `no` or `not shown` (the data cannot tell), and
the target is met when every condition is `yes`, not met when one is `no`, else not shown:

* seeds: the seeds the judged runs and DPO share, at least `min_seeds`;
* at DPO's preference (a `run` only): two one-sided tests on its preference-score difference to DPO (paired by seed,
  over seeds and prompts) at the report's level: `yes` when it is shown within the margin, `no` when shown beyond
  it, `not shown` otherwise (an interval that contains 0 is absence of evidence, not equality). A front is read at
  DPO's preference exactly (interpolated), so it needs no test; one that never reaches DPO's preference has no gain;
* its gain: a run's designer gap to DPO when it is at DPO's preference; a front's gain at DPO's preference
  (`upo.experiments.frontier.fronts.designer_at_preference`), which may be a lower bound ("at least");
* `min_gain`: that gain (its estimate) at least `min_gain`;
* `gain_at_least`: at least each named family's gain at DPO's preference (a family whose front never reaches DPO's
  preference has none to beat; a lower bound on either side decides only where it can);
* `not_dominated_by`: the run's point (a front: at least one of its points) is not dominated by the named family's
  interpolated front (`upo.experiments.frontier.fronts.front_dominates`).

Comparisons of gains and points are on the means over seeds; each is printed with its interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from upo.errors import ConfigError
from upo.experiments.frontier.fronts import INTERPOLATED, LOWER_BOUND, NEVER_REACHES, front_dominates
from upo.experiments.frontier.intervals import DIFFERENT, EQUAL, MeanEstimate, equal_within

YES, NO, NOT_SHOWN = "yes", "no", "not shown"
TARGET_KEYS = ("family", "run", "preference_margin", "min_gain", "gain_at_least", "not_dominated_by", "min_seeds")


@dataclass(frozen=True)
class Target:
    """A declared target (see the module docstring)."""

    family: str
    preference_margin: float
    run: str | None = None
    min_gain: float | None = None
    gain_at_least: tuple[str, ...] = ()
    not_dominated_by: tuple[str, ...] = ()
    min_seeds: int = 1

    def describe(self) -> str:
        """The target in words, as the report states it."""
        judged = f"{self.family}'s run {self.run}" if self.run else f"{self.family}'s front"
        parts = [f"at DPO's preference (within ±{self.preference_margin:g}, two one-sided tests)" if self.run else
                 "read at DPO's preference"]
        if self.min_gain is not None:
            parts.append(f"designer gain >= {self.min_gain:+g} std")
        if self.gain_at_least:
            parts.append(f"its designer gain at DPO's preference at least that of {_names(self.gain_at_least)}")
        if self.not_dominated_by:
            parts.append(f"not dominated by the front of {_names(self.not_dominated_by, 'or')}")
        if self.min_seeds > 1:
            parts.append(f"over at least {self.min_seeds} seeds")
        return f"{judged}: " + "; ".join(parts)


def _names(names, last: str = "and") -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"


def _number(value, where: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
            (positive and value <= 0):
        raise ConfigError(f"{where} must be a {'positive' if positive else 'finite'} number, got {value!r}.")
    return float(value)


def read_target(given, families: dict[str, str]) -> Target | None:
    """The config's `target:` checked against its runs (`families`: config run name -> family); None when absent.
    Every problem is a `ConfigError` naming the key and the fix."""
    if given is None:
        return None
    where = "frontier config, target"
    if not isinstance(given, dict):
        raise ConfigError(f"{where} must be a mapping, e.g. target: {{family: UPO, preference_margin: 0.01}}; got "
                          f"{given!r:.60}.")
    unknown = sorted(str(k) for k in given if k not in TARGET_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; the keys are {list(TARGET_KEYS)}.")
    for key in ("family", "preference_margin"):
        if key not in given:
            raise ConfigError(f"{where}: missing {key!r} (e.g. target: {{family: UPO, preference_margin: 0.01}}).")
    known = list(dict.fromkeys(families.values()))

    def family(name, key: str) -> str:
        if name not in known:
            raise ConfigError(f"{where}, {key}: {name!r} is not a family of this grid's runs; its families: "
                              f"{', '.join(known)}.")
        return name

    def families_list(key: str) -> tuple[str, ...]:
        value = given.get(key) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where}, {key} must be a list of families, e.g. [MODPO, DRO-V]; got {value!r:.60}.")
        return tuple(family(name, key) for name in value)

    judged = family(given["family"], "family")
    run = given.get("run")
    if run is not None and families.get(run) != judged:
        runs = [name for name, f in families.items() if f == judged]
        raise ConfigError(f"{where}, run: {run!r} is not a run of family {judged}; its runs: {', '.join(runs)}.")
    min_seeds = given.get("min_seeds", 1)
    if isinstance(min_seeds, bool) or not isinstance(min_seeds, int) or min_seeds < 1:
        raise ConfigError(f"{where}, min_seeds must be an integer >= 1, got {min_seeds!r}.")
    min_gain = given.get("min_gain")
    return Target(family=judged, run=run,
                  preference_margin=_number(given["preference_margin"], f"{where}, preference_margin", positive=True),
                  min_gain=None if min_gain is None else _number(min_gain, f"{where}, min_gain"),
                  gain_at_least=families_list("gain_at_least"), not_dominated_by=families_list("not_dominated_by"),
                  min_seeds=min_seeds)


# ------------------------------------------------------------------------------------------- the one rule


def _judged_gain(target: Target, fronts: dict, group: dict | None) -> tuple[str, float | None, list | None, list]:
    """(kind, gain, interval, conditions so far) of what the target judges: a run (`group`, with its gaps to DPO) or
    the family's front. kind: "exact", "lower_bound", "none" (no gain at DPO's preference) or "unknown"."""
    conditions = []
    if target.run is not None:
        if group is None or "preference_gap_variance_parts" not in group or "gain_std" not in group:
            conditions.append(("at DPO's preference", NOT_SHOWN, f"{target.run}: no finished run paired with DPO"))
            return "unknown", None, None, conditions
        seeds = len(group.get("paired_seeds") or [None])
        estimate = MeanEstimate(group["preference_gap"], tuple(map(tuple, group["preference_gap_variance_parts"])),
                                seeds, 0)
        test = equal_within(estimate, target.preference_margin)
        low, high = test["interval"]
        outcome = {EQUAL: YES, DIFFERENT: NO}.get(test["outcome"], NOT_SHOWN)
        shown = {YES: "inside", NO: "wholly outside"}.get(outcome, "not inside")
        conditions.append(("at DPO's preference", outcome,
                           f"{target.run}'s preference score {group['preference_gap']:+.4f} from DPO's, 90% interval "
                           f"{low:+.4f}..{high:+.4f}, {shown} ±{target.preference_margin:g} "
                           f"(TOST p = {test['p']:.3f})"))
        kind = {YES: "exact", NO: "none"}.get(outcome, "unknown")
        return kind, group["gain_std"], group.get("gain_std_ci90"), conditions
    front = fronts.get(target.family) or {}
    gain = front.get("gain")
    if not gain:
        conditions.append(("at DPO's preference", NOT_SHOWN, f"{target.family}: no front paired with DPO"))
        return "unknown", None, None, conditions
    kind = front_kind(gain)
    outcome = {"exact": YES, "lower_bound": YES, "none": NO}.get(kind, NOT_SHOWN)
    detail = {"exact": "read at DPO's preference",
              "lower_bound": "above DPO's preference at every point (its gain a lower bound)",
              "none": "shown below DPO's preference at every point"}.get(kind, "not shown to reach DPO's preference "
                                                                        "or to lie above or below it")
    conditions.append(("at DPO's preference", outcome, f"{target.family}'s front: {detail}"))
    return kind, gain["gain_std"], gain.get("interval"), conditions


def front_kind(gain: dict) -> str:
    """A front's gain at DPO's preference as the rule uses it: "exact" (interpolated), "lower_bound" (shown above
    DPO's preference), "none" (shown below it) or "unknown" (a bound or a miss the noise does not show)."""
    if gain["kind"] == INTERPOLATED:
        return "exact"
    if gain.get("shown") is True:
        return {LOWER_BOUND: "lower_bound", NEVER_REACHES: "none"}[gain["kind"]]
    return "unknown"


def _at_least(kind: str, gain: float | None, other: dict | None) -> str:
    """Whether a gain (kind as `_judged_gain`'s) is at least another family's front gain at DPO's preference."""
    if kind == "unknown" or other is None or not other.get("gain"):
        return NOT_SHOWN
    if kind == "none":
        return NO
    theirs, their_kind = other["gain"], front_kind(other["gain"])
    if their_kind == "none":  # no gain at DPO's preference to beat
        return YES
    if their_kind == "exact":
        if gain >= theirs["gain_std"]:  # ours, or a lower bound of ours, at least theirs
            return YES
        return NO if kind == "exact" else NOT_SHOWN
    if their_kind == "lower_bound":  # theirs is at least theirs["gain_std"]
        return NO if kind == "exact" and gain < theirs["gain_std"] else NOT_SHOWN
    return NOT_SHOWN


def _format_gain(kind: str, gain: float | None, interval) -> str:
    if kind == "none":
        return "no gain at DPO's preference"
    if gain is None:
        return "no gain read (the noise does not show whether the front reaches DPO's preference)"
    shown = f"{'>= ' if kind == 'lower_bound' else ''}{gain:+.2f} std"
    notes = [f"90% interval {format_interval(interval)}"] if interval else []
    if kind == "unknown":
        notes.append("not shown to be at DPO's preference")
    return shown + (f" ({'; '.join(notes)})" if notes else "")


def format_interval(interval, pattern: str = "{:+.2f}") -> str:
    """`low..high`, an infinite end as "-inf" or "+inf" (an interval that the data do not bound on that side)."""
    return "..".join(f"{'-' if v < 0 else '+'}inf" if math.isinf(v) else pattern.format(v) for v in interval)


def judge_target(target: Target | None, fronts: dict, groups: list[dict]) -> dict | None:
    """The declared target judged on the grid's fronts (`fronts`: family -> `fronts.family_front`) and config runs
    (`groups`: `results.seed_summaries`), by the rule of the module docstring. None when no target is declared.

    Returns `{"met": True | False | None, "verdict": "met" | "not met" | "not shown", "target": its description,
    "conditions": [{"name", "outcome", "detail"}]}`; `met` None when the data cannot tell."""
    if target is None:
        return None
    group = next((g for g in groups if g["name"] == target.run), None) if target.run else None
    front = fronts.get(target.family) or {}
    seeds = len(group.get("paired_seeds") or []) if group else len(front.get("seeds") or []) if front.get("dpo") else 0
    conditions = [("seeds", YES if seeds >= target.min_seeds else NOT_SHOWN,
                   f"{seeds} paired with DPO, at least {target.min_seeds} declared")]
    kind, gain, interval, more = _judged_gain(target, fronts, group)
    conditions += more
    shown_gain = _format_gain(kind, gain, interval)
    if target.min_gain is not None:
        if kind == "exact":
            outcome = YES if gain >= target.min_gain else NO
        elif kind == "lower_bound":
            outcome = YES if gain >= target.min_gain else NOT_SHOWN
        else:
            outcome = NO if kind == "none" else NOT_SHOWN
        conditions.append(("designer gain", outcome, f"{shown_gain}, at least {target.min_gain:+g}"))
    for other in target.gain_at_least:
        theirs = (fronts.get(other) or {}).get("gain")
        conditions.append((f"gain at least {other}'s", _at_least(kind, gain, fronts.get(other)),
                           f"{shown_gain} against {other}'s "
                           + (_format_gain(front_kind(theirs), theirs["gain_std"], theirs.get("interval"))
                              if theirs else "(no front)")))
    for other in target.not_dominated_by:
        other_front = fronts.get(other) or {}
        curve = [(p["designer_score"], p["preference_score"]) for name in other_front.get("front", [])
                 for p in other_front["points"] if p["name"] == name]
        if not curve:
            conditions.append((f"not dominated by {other}", NOT_SHOWN, f"{other}: no finished run"))
            continue
        if target.run is not None:
            judged = [(group["designer_score"], group["preference_score"])] if group else []
        else:
            judged = [(p["designer_score"], p["preference_score"]) for p in front.get("points", []) if p["on_front"]]
        if not judged:
            conditions.append((f"not dominated by {other}", NOT_SHOWN, "nothing to judge"))
            continue
        free = [point for point in judged if not front_dominates(curve, point)]
        conditions.append((f"not dominated by {other}", YES if free else NO,
                           f"{other}'s front ({len(curve)} point{'s' if len(curve) > 1 else ''}) "
                           + ("dominates it" if not free else "does not dominate it")))
    outcomes = [outcome for _, outcome, _ in conditions]
    met = True if all(o == YES for o in outcomes) else False if NO in outcomes else None
    return {"met": met, "verdict": {True: "met", False: "not met", None: NOT_SHOWN}[met], "target": target.describe(),
            "conditions": [{"name": n, "outcome": o, "detail": d} for n, o, d in conditions]}
