"""Fronts, not points: each statistic of upo/experiments/frontier/{intervals,fronts}.py against numbers computed by
hand (interpolation at DPO's preference, a lower bound, a front that never reaches it, domination by a front, the
area a front dominates, the interval over seeds and prompts, the two one-sided tests), and the interval's coverage on
a small seeded simulation."""

import math

import numpy as np
import pytest

from upo.experiments.frontier.fronts import (
    INTERPOLATED,
    LOWER_BOUND,
    NEVER_REACHES,
    designer_at_preference,
    dominated_area,
    family_front,
    front_curve,
    front_dominates,
    strengths,
)
from upo.experiments.frontier.intervals import EQUAL, NOT_SHOWN, MeanEstimate, equal_within, seeds_prompts_mean

# x: designer score, y: preference score. The family's front, x increasing and y decreasing.
FRONT = [(0.2, 0.17), (0.5, 0.16), (0.8, 0.15)]


def test_the_front_is_the_upper_right_of_the_points_by_designer_score():
    points = [(0.8, 0.15), (0.4, 0.14), (0.2, 0.17), (0.5, 0.16), (0.5, 0.16)]  # (0.4, 0.14): below (0.5, 0.16)
    assert front_curve(points) == FRONT


def test_designer_at_preference_interpolates_between_the_two_points_that_bracket_it():
    # DPO's preference 0.155 lies halfway from (0.5, 0.16) to (0.8, 0.15): 0.5 + 0.5 * (0.8 - 0.5) = 0.65.
    reading = designer_at_preference(FRONT, 0.155)
    assert (reading.kind, reading.left, reading.right) == (INTERPOLATED, 1, 2)
    assert reading.designer == pytest.approx(0.65) and reading.share == pytest.approx(0.5)
    # A quarter of the way from (0.2, 0.17) to (0.5, 0.16): 0.2 + 0.25 * 0.3 = 0.275.
    assert designer_at_preference(FRONT, 0.1675).designer == pytest.approx(0.275)
    # At a point of the front: that point's designer score.
    at_point = designer_at_preference(FRONT, 0.16)
    assert (at_point.kind, at_point.designer, at_point.left, at_point.right) == (INTERPOLATED, 0.5, 1, 1)


def test_no_extrapolation_a_lower_bound_above_dpos_preference_and_nothing_below_it():
    # Every point has more preference than DPO's 0.14: the best designer score, 0.8, is a lower bound.
    bound = designer_at_preference(FRONT, 0.14)
    assert (bound.kind, bound.designer, bound.left, bound.right) == (LOWER_BOUND, 0.8, 2, 2)
    # Every point has less preference than DPO's 0.18: the front never reaches it, and there is no number.
    never = designer_at_preference(FRONT, 0.18)
    assert (never.kind, never.designer) == (NEVER_REACHES, None)
    # A front of one point: its designer score at its own preference only.
    assert designer_at_preference([(0.4, 0.16)], 0.16).designer == 0.4
    assert designer_at_preference([(0.4, 0.16)], 0.15).kind == LOWER_BOUND


def test_a_point_is_dominated_by_a_front_when_a_point_of_its_lines_is_above_and_to_the_right():
    assert front_dominates(FRONT, (0.6, 0.155))  # the front reaches 0.65 at preference 0.155
    assert not front_dominates(FRONT, (0.7, 0.155))
    assert not front_dominates(FRONT, (0.5, 0.16))  # a point of the front itself
    assert front_dominates(FRONT, (0.5, 0.159))  # just below it
    assert not front_dominates(FRONT, (0.1, 0.175))  # more preference than any point of the front
    assert front_dominates(FRONT, (0.7, 0.14)) and not front_dominates(FRONT, (0.9, 0.14))  # below the front's end
    assert not front_dominates([], (0.0, 0.0))


def test_the_area_a_front_dominates_by_hand():
    # Above (0, 0.14): strips 0.2 x 0.03, 0.3 x 0.02 and 0.3 x 0.01; the dominated point (0.4, 0.145) adds nothing,
    # nor does (1.0, 0.13), below the reference point.
    points = [*FRONT, (0.4, 0.145), (1.0, 0.13)]
    assert dominated_area(points, (0.0, 0.14)) == pytest.approx(0.2 * 0.03 + 0.3 * 0.02 + 0.3 * 0.01)
    assert dominated_area([(1.0, 3.0), (2.0, 2.0)], (0.0, 0.0)) == pytest.approx(5.0)  # 3 + 2 x 2 - 1 x 2
    assert dominated_area([(1.0, 3.0)], (1.0, 0.0)) == 0.0 and dominated_area([], (0.0, 0.0)) == 0.0


def test_a_runs_strength_is_what_differs_within_its_family():
    options = [{"alpha": 1.0, "aw_temperature": 1.0}, {"alpha": 1.0, "aw_temperature": 0.5}, {"alpha": 1.0}]
    assert strengths(options) == ["aw_temperature=1.0", "aw_temperature=0.5", "aw_temperature unset"]
    assert strengths([{"loss_type": ["drov"], "alpha": 1.0}]) == [""]


# ------------------------------------------------------------------------------------------- intervals


def test_the_interval_over_seeds_and_prompts_by_hand():
    # 2 seeds x 3 prompts: grand mean 3, seed means 2 and 4, prompt means 1, 2 and 6; residuals (0, 1, -1), (0, -1, 1).
    # MS_seeds = 3 * (1 + 1) / 1 = 6; MS_prompts = 2 * (4 + 1 + 9) / 2 = 14; MS_residual = 4 / 2 = 2.
    # Seeds' part 6 / 6 = 1 with 1 df; prompts' part (14 - 2) / 6 = 2 with 2 df. t(0.95, 1) = 6.313752,
    # t(0.95, 2) = 2.919986: half-width sqrt(6.313752^2 x 1 + 2.919986^2 x 2) = 7.504.
    estimate = seeds_prompts_mean([[0, 2, 4], [2, 2, 8]])
    assert estimate.mean == 3.0 and [v for part in estimate.parts for v in part] == pytest.approx([1.0, 1.0, 2.0, 2.0])
    assert estimate.se == pytest.approx(math.sqrt(3.0))
    half = math.sqrt(6.313752 ** 2 * 1.0 + 2.919986 ** 2 * 2.0)
    assert estimate.interval(0.9) == pytest.approx([3 - half, 3 + half], abs=1e-5)
    # One seed: the paired t-interval over prompts, var(1, 2, 3, 6) / 4 = (14 / 3) / 4 with 3 df: t = 2.353363.
    one = seeds_prompts_mean([[1, 2, 3, 6]])
    assert list(one.parts[0]) == pytest.approx([14 / 12, 3.0])
    half = 2.353363 * math.sqrt(14 / 12)
    assert one.interval(0.9) == pytest.approx([3 - half, 3 + half], abs=1e-6)
    # Prompts that differ less than the residual: no prompts' part (it never narrows the interval).
    assert len(seeds_prompts_mean([[0.0, 1.0], [1.0, 0.0]]).parts) == 1
    assert seeds_prompts_mean([]) is None and seeds_prompts_mean([[1.0]]) is None


def test_two_one_sided_tests_by_hand():
    # One part with 2 df: P(T > t) = (1 - t / sqrt(t^2 + 2)) / 2, and t(0.95, 2) = 2.919986.
    # Gap 0.002, se 0.003, margin 0.01: the upper test, t = (0.01 - 0.002) / 0.003 = 8/3, p = 0.0583 > 0.05.
    test = equal_within(MeanEstimate(0.002, ((0.003 ** 2, 2.0),), 3, 96), 0.01)
    t = 8 / 3
    assert test["p"] == pytest.approx((1 - t / math.sqrt(t * t + 2)) / 2, rel=1e-6) and test["outcome"] == NOT_SHOWN
    assert test["interval"] == pytest.approx([0.002 - 2.919986 * 0.003, 0.002 + 2.919986 * 0.003], abs=1e-7)
    # se 0.002: t = 4, p = (1 - 4 / sqrt(18)) / 2 = 0.0286 < 0.05: equal within the margin.
    test = equal_within(MeanEstimate(0.002, ((0.002 ** 2, 2.0),), 3, 96), 0.01)
    assert test["p"] == pytest.approx((1 - 4 / math.sqrt(18)) / 2, rel=1e-6) and test["outcome"] == EQUAL
    # An interval that contains 0 but reaches past the margin is absence of evidence, not equality.
    assert equal_within(MeanEstimate(0.0, ((0.004 ** 2, 2.0),), 3, 96), 0.01)["outcome"] == NOT_SHOWN
    assert equal_within(MeanEstimate(0.03, ((0.003 ** 2, 2.0),), 3, 96), 0.01)["outcome"] == "different"


def _gap_tables(rng, reps, seeds, prompts, sigma_a, sigma_b, sigma_e):
    return (sigma_a * rng.standard_normal((reps, seeds, 1)) + sigma_b * rng.standard_normal((reps, 1, prompts))
            + sigma_e * rng.standard_normal((reps, seeds, prompts)))


@pytest.mark.parametrize("sigma_a, sigma_b, sigma_e", [(0.28, 0.7, 0.14), (0.03, 0.7, 0.14), (0.14, 0.3, 0.4)],
                         ids=["seeds-dominate", "prompts-dominate", "mixed"])
def test_the_interval_covers_90_percent_on_a_small_simulation(sigma_a, sigma_b, sigma_e):
    """3 seeds x 96 prompts at the project's spreads (bench/interval_coverage.py prints the full grid and the old
    bootstrap's 69-94%): 400 seeded tables, so 3 Monte Carlo sd are 4.5 points."""
    rng = np.random.default_rng(0)
    tables = _gap_tables(rng, 400, 3, 96, sigma_a, sigma_b, sigma_e)
    covered = sum(low <= 0 <= high for low, high in (seeds_prompts_mean(t).interval(0.9) for t in tables)) / 400
    assert 0.9 - 0.045 <= covered <= 0.97


# ------------------------------------------------------------------------------------------- a family's front


def _run(designer, preference):
    return {"designer": list(designer), "preference": list(preference),
            "summary": {"designer_score": float(np.mean(designer)), "preference_score": float(np.mean(preference))}}


def test_the_gain_at_dpos_preference_and_its_interval_by_hand():
    # One seed, 4 prompts, preference scores the same on every prompt: L (x 2, y 0.2), R (x 4, y 0.1), DPO (x 0, y
    # 0.15), halfway: gain 3. Without noise in the preference, the interval is that of 0.5 L + 0.5 R - DPO per prompt,
    # (1, 2, 3, 6): 3 +- t(0.95, 3) sqrt((14 / 3) / 4) = 3 +- 2.542.
    left, right, dpo = _run([0, 2, 2, 4], [0.2] * 4), _run([2, 2, 4, 8], [0.1] * 4), _run([0] * 4, [0.15] * 4)
    groups = [{"name": "upo-t1", "options": {"aw_temperature": 1.0}, "by_seed": {None: left}},
              {"name": "upo-t0.5", "options": {"aw_temperature": 0.5}, "by_seed": {None: right}}]
    front = family_front("UPO", groups, {"name": "dpo", "options": {}, "by_seed": {None: dpo}}, unit=1.0)
    assert front["front"] == ["upo-t1", "upo-t0.5"] and [p["strength"] for p in front["points"]] == [
        "aw_temperature=1.0", "aw_temperature=0.5"]
    gain = front["gain"]
    assert gain["kind"] == INTERPOLATED and gain["gain_std"] == pytest.approx(3.0)
    assert gain["between"] == ["upo-t1", "upo-t0.5"]
    half = 2.353363 * math.sqrt(14 / 12)
    assert gain["interval"] == pytest.approx([3 - half, 3 + half], abs=1e-4)
    # In units of 2 (the reference's std): everything halves.
    assert family_front("UPO", groups, {"name": "dpo", "options": {}, "by_seed": {None: dpo}}, unit=2.0)[
        "gain"]["gain_std"] == pytest.approx(1.5)


def test_the_interval_opens_where_the_two_points_preference_cannot_be_told_apart():
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((3, 8)) * 0.05
    left, right = _run([0.4] * 8, 0.161 + noise[0]), _run([0.9] * 8, 0.159 + noise[1])
    dpo = _run([0.0] * 8, 0.160 + noise[2])
    groups = [{"name": "a", "options": {"alpha": 1}, "by_seed": {0: left}},
              {"name": "b", "options": {"alpha": 2}, "by_seed": {0: right}}]
    gain = family_front("UPO", groups, {"name": "dpo", "by_seed": {0: dpo}}, unit=1.0)["gain"]
    assert gain["kind"] == INTERPOLATED and (math.isinf(gain["interval"][0]) or math.isinf(gain["interval"][1]))


def test_a_lower_bound_is_shown_only_where_its_point_has_more_preference_than_dpo_beyond_the_noise():
    dpo = {"name": "dpo", "by_seed": {0: _run([0.0, 0.0, 0.0, 0.0], [0.10, 0.11, 0.09, 0.10])}}
    far = {"name": "drov", "options": {}, "by_seed": {0: _run([1, 1, 1, 1], [0.20, 0.21, 0.19, 0.20])}}
    near = {"name": "drov", "options": {}, "by_seed": {0: _run([1, 1, 1, 1], [0.11, 0.08, 0.12, 0.11])}}
    shown = family_front("DRO-V", [far], dpo, 1.0)["gain"]
    assert (shown["kind"], shown["gain_std"], shown["shown"]) == (LOWER_BOUND, 1.0, True)
    assert family_front("DRO-V", [near], dpo, 1.0)["gain"]["shown"] is False
    below = {"name": "drov", "options": {}, "by_seed": {0: _run([1, 1, 1, 1], [0.0, 0.01, -0.01, 0.0])}}
    never = family_front("DRO-V", [below], dpo, 1.0)["gain"]
    assert (never["kind"], never["gain_std"], never["shown"]) == (NEVER_REACHES, None, True)


def test_a_front_is_over_the_seeds_every_run_of_its_family_and_dpo_finished():
    run = _run([1.0, 1.0], [0.2, 0.2])
    other = _run([3.0, 3.0], [0.2, 0.2])
    groups = [{"name": "a", "options": {}, "by_seed": {0: run, 1: other, 2: run}}]
    front = family_front("UPO", groups, {"name": "dpo", "by_seed": {0: run, 1: run}}, unit=1.0)
    assert front["seeds"] == [0, 1] and front["points"][0]["designer_score"] == pytest.approx(2.0)
    alone = family_front("UPO", groups, None, unit=1.0)  # no DPO: the front, without a gain
    assert alone["seeds"] == [0, 1, 2] and alone["gain"] is None and alone["dpo"] is None
