"""The pre-registered rule that chooses UPO's default designer term (docs/results/2026-12-03-preregistration.md),
applied to the screening's reports.

    python scripts/screening_rule.py runs/fronts-task1/frontier.json runs/fronts-task2/frontier.json ...

Each report holds one seed's runs `dpo-s0`, `{form}-t{T}-s0`. Prints, per task, every run's gain over DPO (in std of the
reference's designer score) and preference, each form's G (its front read at DPO's preference minus the margin), then
the form and temperature the rule chooses. Reads only `frontier.json`; trains and evaluates nothing.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from upo.experiments.frontier.fronts import NEVER_REACHES, designer_at_preference, front_curve

FORMS = ("awr", "topr")
MARGIN = 0.01  # the preference margin every fronts config declares
TIE = 0.05  # std: a form this close to awr does not replace it; temperatures this close go to the higher one
RUN_NAME = re.compile(r"^(?P<form>[a-z]+)-t(?P<t>[0-9.]+)-s0$")


def read_task(path: Path) -> dict:
    """{"dpo": (designer, preference), (form, T): (gain in std over DPO, preference)} of one report."""
    report = json.loads(path.read_text())
    unit = report["reference_designer_std"]
    summaries = {run["name"]: run["summary"] for run in report["runs"]}
    dpo = summaries["dpo-s0"]
    task = {"dpo": (dpo["designer_score"], dpo["preference_score"])}
    for name, summary in summaries.items():
        match = RUN_NAME.match(name)
        if match and match["form"] in FORMS:
            gain = (summary["designer_score"] - dpo["designer_score"]) / unit
            task[match["form"], float(match["t"])] = (gain, summary["preference_score"])
    return task


def form_gain(task: dict, form: str) -> float | None:
    """G(form, task): the form's front over its temperatures read at DPO's preference minus the margin."""
    points = [point for key, point in task.items() if key != "dpo" and key[0] == form]
    if not points:
        return None
    reading = designer_at_preference(front_curve(points), task["dpo"][1] - MARGIN)
    return None if reading.kind == NEVER_REACHES else reading.designer


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def choose(tasks: dict[str, dict]) -> tuple[str, float]:
    """The default form (rule 2) and its temperature (rule 3), printing what decides them."""
    means = {}
    for form in FORMS:
        gains = [g for g in (form_gain(task, form) for task in tasks.values()) if g is not None]
        if len(gains) >= 2:
            means[form] = mean(gains)
        print(f"{form}: G on {len(gains)} task(s), mean {means[form]:+.3f}" if form in means
              else f"{form}: a number on {len(gains)} task(s), fewer than two: not eligible")
    # The paper's term stays unless another form is measurably further (and when no form has numbers enough).
    best = max(means, key=means.get, default="awr")
    form = best if means.get(best, 0.0) > means.get("awr", float("-inf")) + TIE else "awr"
    temperatures = sorted({key[1] for task in tasks.values() for key in task if key != "dpo" and key[0] == form},
                          reverse=True)
    eligible = [t for t in temperatures if sum(task[form, t][1] >= task["dpo"][1] - MARGIN
                                               for task in tasks.values() if (form, t) in task) >= 2]
    by = "gain" if eligible else "preference"
    scores = {t: mean([task[form, t][0 if eligible else 1] for task in tasks.values() if (form, t) in task])
              for t in (eligible or temperatures)}
    top = max(scores.values())
    tie = TIE if eligible else 0.0
    temperature = max(t for t, s in scores.items() if s >= top - tie)  # ties go to the higher temperature
    print(f"{form}: temperatures with preference >= DPO's - {MARGIN} on two tasks or more: {eligible or 'none'}; "
          f"mean {by} " + ", ".join(f"T {t}: {s:+.3f}" if eligible else f"T {t}: {s:.4f}" for t, s in scores.items()))
    return form, temperature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="frontier.json of each screening task")
    tasks = {str(path.parent.name): read_task(path) for path in parser.parse_args().reports}
    for name, task in tasks.items():
        designer, preference = task["dpo"]
        print(f"{name}: DPO designer {designer:+.3f}, preference {preference:.4f}")
        for key in sorted(k for k in task if k != "dpo"):
            gain, pref = task[key]
            print(f"  {key[0]} T {key[1]}: gain {gain:+.3f} std, preference {pref:.4f} ({pref - preference:+.4f})")
        for form in FORMS:
            g = form_gain(task, form)
            print(f"  G({form}) = " + ("none (its front never reaches the preference)" if g is None else f"{g:+.3f}"))
    form, temperature = choose(tasks)
    print(f"default: aux_loss {form}, aw_temperature {temperature}")


if __name__ == "__main__":
    main()
