"""How often the frontier's 90% intervals cover the truth, simulated at the spreads of the project's grids: the
two-level bootstrap the reports used before, against the interval over seeds and prompts that replaced it
(`upo.experiments.frontier.intervals.seeds_prompts_mean`), and the interval of the designer gain read off a front at
DPO's preference (`upo.experiments.frontier.fronts.family_front`).

The model of a run's per-prompt score (the designer score in std of the reference's, or the preference score): for
method m at seed s on prompt j, `mu_m + u[m, s] + p[j] + q[m, j] + eps[m, s, j]`: `u` the seed's effect on the run
(sd sigma_u), `p` the prompt's, shared by every run (cancels in a gap), `q` the method's on that prompt, shared by its
seeds (sd sigma_q), `eps` the reply a seed's model gives (sd sigma_eps). A run's mean over n prompts then moves from
seed to seed by `between = sqrt(sigma_u^2 + sigma_eps^2 / n)` (0.014 to 0.34 on the project's grids, docs/RESULTS.md),
and a gap to DPO of the same seed is the (seeds x prompts) table of the differences. Every prompt is evaluated at
every seed, as in `upo frontier`.

    python bench/interval_coverage.py                 # 3 seeds, 96 prompts; about 2 minutes on 2 cores
    python bench/interval_coverage.py --seeds 2 --reps 1000
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from upo.experiments.frontier.fronts import INTERPOLATED, LOWER_BOUND, family_front  # noqa: E402
from upo.experiments.frontier.intervals import LEVEL, seeds_prompts_mean  # noqa: E402


def gap_tables(rng, reps: int, seeds: int, prompts: int, between: float, sigma_eps: float, sigma_q: float,
               noise: str = "normal") -> np.ndarray:
    """`reps` gap tables (reps x seeds x prompts) of a method against DPO, whose true mean gap is 0: seed effects
    and replies independent between the two runs, the method's prompt effects too."""
    sigma_u = math.sqrt(between ** 2 - sigma_eps ** 2 / prompts)
    shape = (reps, seeds, prompts)

    def replies():
        if noise == "skewed":  # a reply's score is skewed: a centred exponential, sd 1
            return rng.exponential(1.0, shape) - 1.0
        if noise == "binary":  # a reply passes or fails the objective, one in five passing (centred, sd 1)
            return (rng.random(shape) < 0.2).astype(float) / 0.4 - 0.5
        return rng.standard_normal(shape)

    seed_effect = sigma_u * (rng.standard_normal((reps, seeds, 1)) - rng.standard_normal((reps, seeds, 1)))
    prompt_effect = sigma_q * (rng.standard_normal((reps, 1, prompts)) - rng.standard_normal((reps, 1, prompts)))
    return seed_effect + prompt_effect + sigma_eps * (replies() - replies())


def two_level_bootstrap(table: np.ndarray, rng, resamples: int = 4000, level: float = LEVEL) -> tuple[float, float]:
    """The interval the reports used before (`two_level_interval`, removed): the seeds drawn with replacement and,
    independently, the prompts (the same for every drawn seed), the percentile interval of the resampled means: all
    the resamples at once."""
    seeds, prompts = table.shape
    rows = rng.integers(0, seeds, (resamples, seeds))
    columns = rng.integers(0, prompts, (resamples, prompts))
    per_seed = table[:, columns].mean(axis=2)  # (seeds, resamples): each seed's mean over the drawn prompts
    means = np.take_along_axis(per_seed.T, rows, axis=1).mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def gap_coverage(rng, reps: int, seeds: int, prompts: int, between: float, sigma_eps: float, sigma_q: float,
                 noise: str = "normal", old_reps: int = 0) -> tuple[float, float | None, float]:
    """(coverage of the new interval, of the old one over the first `old_reps` tables or None, the new interval's
    median width) of 0, the true gap."""
    tables = gap_tables(rng, reps, seeds, prompts, between, sigma_eps, sigma_q, noise)
    covered, widths = 0, []
    for table in tables:
        low, high = seeds_prompts_mean(table).interval(LEVEL)
        covered += low <= 0 <= high
        widths.append(high - low)
    old = None
    if old_reps:
        old = sum(low <= 0 <= high for low, high in (two_level_bootstrap(t, rng) for t in tables[:old_reps])) / old_reps
    return covered / reps, old, float(np.median(widths))


def front_coverage(rng, reps: int, seeds: int, prompts: int, spacing: float, designer=(0.1, 0.3, 0.3),
                   preference=(0.006, 0.04, 0.05)) -> dict:
    """The designer gain at DPO's preference read off a family of 3 strengths, whose true points lie on one line:
    designer +0.3, +0.6, +0.9 std above DPO, preference +0.75, -0.25, -1.25 `spacing` from DPO's; the true gain is
    +0.525 std (three quarters of the way from the first point to the second). `designer` and `preference`: (between,
    sigma_eps, sigma_q) of each score. Coverage counts an interpolated reading that covers +0.525, and a lower bound
    shown above DPO's preference whose interval's low end is below it; a bound not shown, or a front that never
    reaches DPO's preference, claims nothing."""
    true_designer, true_preference = [0.3, 0.6, 0.9], [0.75 * spacing, -0.25 * spacing, -1.25 * spacing]
    truth = 0.525

    def run_tables(means, between, sigma_eps, sigma_q, shared):
        sigma_u = math.sqrt(between ** 2 - sigma_eps ** 2 / prompts)
        return (means + shared + sigma_u * rng.standard_normal((seeds, 1))
                + sigma_q * rng.standard_normal((1, prompts)) + sigma_eps * rng.standard_normal((seeds, prompts)))

    counts = {INTERPOLATED: 0, LOWER_BOUND: 0, "unshown bound": 0, "never": 0, "covered": 0}
    for _ in range(reps):
        shared_designer = rng.standard_normal((1, prompts)) * 0.5  # the prompt's own, in every run
        shared_preference = rng.standard_normal((1, prompts)) * 0.08
        runs = []
        for mean_designer, mean_preference in zip([0.0, *true_designer], [0.0, *true_preference]):
            designer_table = run_tables(mean_designer, *designer, shared_designer)
            preference_table = run_tables(0.16 + mean_preference, *preference, shared_preference)
            runs.append({"by_seed": {s: {"designer": list(designer_table[s]), "preference": list(preference_table[s]),
                                         "summary": {"designer_score": float(designer_table[s].mean()),
                                                     "preference_score": float(preference_table[s].mean())}}
                                     for s in range(seeds)}})
        dpo = {"name": "dpo", "options": {}, **runs[0]}
        groups = [{"name": f"m{k}", "options": {"strength": k}, **run} for k, run in enumerate(runs[1:])]
        gain = family_front("M", groups, dpo, 1.0)["gain"]
        if gain["kind"] == INTERPOLATED:
            counts[INTERPOLATED] += 1
            counts["covered"] += gain["interval"][0] <= truth <= gain["interval"][1]
        elif gain["kind"] == LOWER_BOUND and gain["shown"]:
            counts[LOWER_BOUND] += 1
            counts["covered"] += gain["interval"][0] <= truth
        elif gain["kind"] == LOWER_BOUND:
            counts["unshown bound"] += 1
        else:
            counts["never"] += 1
    claims = counts[INTERPOLATED] + counts[LOWER_BOUND]
    return {**counts, "coverage": counts["covered"] / claims if claims else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--reps", type=int, default=4000, help="Simulated grids per row (the new interval).")
    parser.add_argument("--old_reps", type=int, default=1000, help="Of those, how many the old bootstrap is run on.")
    parser.add_argument("--front_reps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    se_new = math.sqrt(LEVEL * (1 - LEVEL) / args.reps)
    se_old = math.sqrt(LEVEL * (1 - LEVEL) / args.old_reps)
    print(f"Coverage of 90% intervals of a gap to DPO (true gap 0), {args.seeds} seeds x {args.prompts} prompts; "
          f"Monte Carlo sd {100 * se_new:.1f} points (new, {args.reps} grids), {100 * se_old:.1f} (old, "
          f"{args.old_reps}).\n")
    print("| between-seed sd of a run's mean | reply sd (sigma_eps) | method x prompt sd (sigma_q) | replies | "
          "old: two-level bootstrap | new: seeds and prompts, t | new: median width |")
    print("|---|---|---|---|---|---|---|")
    rows = [(between, eps, q, "normal") for between in (0.02, 0.05, 0.1, 0.2) for eps in (0.1, 0.3, 0.6)
            for q in (0.2, 0.5) if eps / math.sqrt(args.prompts) < between]
    rows += [(0.1, 0.6, 0.2, "skewed"), (0.1, 0.6, 0.2, "binary"), (0.05, 0.3, 0.5, "binary")]
    for between, eps, q, noise in rows:
        new, old, width = gap_coverage(rng, args.reps, args.seeds, args.prompts, between, eps, q, noise,
                                       args.old_reps)
        print(f"| {between} | {eps} | {q} | {noise} | {100 * old:.1f}% | {100 * new:.1f}% | {width:.3f} |",
              flush=True)
    print(f"\nThe designer gain at DPO's preference read off a front of 3 strengths ({args.front_reps} grids; designer "
          "between 0.1, sigma_eps 0.3, sigma_q 0.3 std; preference between 0.006, sigma_eps 0.04, sigma_q 0.05; the "
          "true gain +0.525 std): coverage of the claims made (an interpolated gain's interval holds it, or a shown "
          "lower bound's interval starts below it).\n")
    print("| preference spacing of the strengths | interpolated | lower bound shown | lower bound not shown (no claim) "
          "| never reaches (no claim) | coverage of the claims |")
    print("|---|---|---|---|---|---|")
    for spacing in (0.005, 0.01, 0.02, 0.04):
        c = front_coverage(rng, args.front_reps, args.seeds, args.prompts, spacing)
        print(f"| {spacing} | {c[INTERPOLATED]} | {c[LOWER_BOUND]} | {c['unshown bound']} | {c['never']} | "
              f"{100 * c['coverage']:.1f}% |", flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
