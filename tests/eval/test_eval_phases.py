"""Where an evaluation's time goes: phases measured inside one another count once, and add up to the wall time."""

import time

from upo.eval.phases import Phases, add_phases, format_phases


def test_a_phase_inside_another_pauses_it_and_the_phases_add_up_to_the_wall_time():
    phases = Phases()
    start = time.perf_counter()
    with phases.measure("generation"):
        time.sleep(0.02)
        with phases.measure("KL"):
            time.sleep(0.03)
        time.sleep(0.01)
    wall = time.perf_counter() - start
    assert phases.seconds["KL"] >= 0.03 and 0.03 <= phases.seconds["generation"] < 0.03 + (wall - 0.06)
    assert abs(sum(phases.seconds.values()) - wall) < 1e-3
    assert list(phases.rounded()) == ["load", "generation", "KL", "implicit accuracy", "scoring"]
    assert phases.rounded()["load"] == 0.0


def test_phases_are_printed_in_order_and_summed_over_runs():
    assert format_phases({"scoring": 0.25, "load": 1.04, "other": 2.0}) == "load 1.0 s, scoring 0.2 s, other 2.0 s"
    total = add_phases({}, {"load": 1.0, "KL": 2.0})
    assert add_phases(total, {"load": 0.5, "bad": "x"}) == {"load": 1.5, "KL": 2.0}
    assert add_phases(total, None) == {"load": 1.5, "KL": 2.0}
