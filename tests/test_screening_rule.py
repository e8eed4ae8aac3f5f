"""scripts/screening_rule.py: the pre-registered rule on reports written by hand, each decision worked out below."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screening_rule.py"
spec = importlib.util.spec_from_file_location("screening_rule", SCRIPT)
rule = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rule)


def write_report(path: Path, dpo: tuple, runs: dict, unit: float = 2.0) -> Path:
    """A frontier.json with the fields the rule reads: DPO's and each run's (designer, preference)."""
    entries = [{"name": "dpo-s0", "summary": {"designer_score": dpo[0], "preference_score": dpo[1]}}]
    entries += [{"name": name, "summary": {"designer_score": d, "preference_score": p}}
                for name, (d, p) in runs.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"reference_designer_std": unit, "runs": entries}))
    return path


def test_gain_is_read_off_the_front_at_dpos_preference_minus_the_margin(tmp_path):
    # DPO (1.0, 0.20); awr at T 1 (2.0, 0.21) and T 0.5 (3.0, 0.17): gains 0.5 and 1.0 std (unit 2).
    # The front is read at 0.20 - 0.01 = 0.19, halfway from preference 0.21 to 0.17: gain 0.75.
    task = rule.read_task(write_report(tmp_path / "t1" / "frontier.json", (1.0, 0.20),
                                       {"awr-t1-s0": (2.0, 0.21), "awr-t0.5-s0": (3.0, 0.17)}))
    assert task["awr", 1.0] == (0.5, 0.21)
    assert rule.form_gain(task, "awr") == pytest.approx(0.75)
    assert rule.form_gain(task, "topr") is None  # not run


def test_a_front_entirely_above_gives_its_best_and_one_entirely_below_no_number(tmp_path):
    above = rule.read_task(write_report(tmp_path / "a" / "frontier.json", (0.0, 0.20),
                                        {"topr-t1-s0": (1.0, 0.25), "topr-t0.5-s0": (2.0, 0.22)}))
    below = rule.read_task(write_report(tmp_path / "b" / "frontier.json", (0.0, 0.20),
                                        {"topr-t1-s0": (1.0, 0.15), "topr-t0.5-s0": (2.0, 0.12)}))
    assert rule.form_gain(above, "topr") == pytest.approx(1.0)  # the best of the front: designer 2.0 / unit 2
    assert rule.form_gain(below, "topr") is None


def test_a_form_must_beat_awr_by_more_than_the_tie_and_temperatures_tie_upwards(tmp_path):
    # Three tasks, DPO at (0, 0.20) each, unit 1. awr's gains 1.0 / 1.2 at T 1 / 0.5, every point at preference
    # 0.195 (above 0.19): G(awr) = its best, 1.2. topr's best point 1.24: within 0.05 of awr, so awr stays.
    # T 1 and T 0.5 are both eligible; mean gains 1.0 and 1.2 differ by more than 0.05: T 0.5.
    tasks = {f"t{i}": rule.read_task(write_report(
        tmp_path / f"t{i}" / "frontier.json", (0.0, 0.20),
        {"awr-t1-s0": (1.0, 0.195), "awr-t0.5-s0": (1.2, 0.195), "topr-t1-s0": (1.24, 0.195)}, unit=1.0))
        for i in (1, 2, 3)}
    assert rule.choose(tasks) == ("awr", 0.5)
    # topr at 1.30 beats 1.2 by more than 0.05: topr, at its only temperature.
    for task in tasks.values():
        task["topr", 1.0] = (1.30, 0.195)
    assert rule.choose(tasks) == ("topr", 1.0)
    # awr's two temperatures within 0.05 of each other: the higher one.
    for task in tasks.values():
        task["topr", 1.0] = (1.0, 0.195)
        task["awr", 0.5] = (1.04, 0.195)
    assert rule.choose(tasks) == ("awr", 1.0)


def test_without_an_eligible_temperature_the_highest_mean_preference_wins(tmp_path):
    # Every awr point below 0.19 on every task: no temperature is eligible; T 0.25 has the most preference.
    tasks = {f"t{i}": rule.read_task(write_report(
        tmp_path / f"t{i}" / "frontier.json", (0.0, 0.20),
        {"awr-t1-s0": (1.0, 0.15), "awr-t0.25-s0": (0.5, 0.18)}, unit=1.0)) for i in (1, 2)}
    # No front reaches 0.19 either, so no form has a G: the paper's term stays.
    assert rule.choose(tasks) == ("awr", 0.25)
