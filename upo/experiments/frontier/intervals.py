"""Intervals over seeds and prompts, and the test of equal preference, for every difference the frontier reports.

A grid over seeds trains each run once per seed and evaluates every run on the same prompts. A difference between
two runs of the same seed (a run and DPO, say) is then a (seeds x prompts) table `d[s, j]`, which the reports summarise
by its mean. Its noise has three parts (two-way crossed random effects, `d[s, j] = mu + a[s] + b[j] + e[s, j]`):

* `a[s]`, the seed's (the adapter's initialisation, the data order): sd `sigma_a`, shared by every prompt of a seed;
* `b[j]`, the prompt's: sd `sigma_b`, shared by every seed, since every seed is evaluated on the same prompts;
* `e[s, j]`, what is left (the reply a seed's model gives to a prompt): sd `sigma_e`.

The variance of the table's mean, `sigma_a^2 / S + sigma_b^2 / n + sigma_e^2 / (S n)`, is estimated in two parts
(`seeds_prompts_mean`): the seeds' part, the variance of the per-seed means over S (`MS_seeds / (S n)`, which holds
`sigma_a` and `sigma_e`), with S - 1 degrees of freedom; and the shared prompts' part, `(MS_prompts - MS_residual) /
(S n)` (0 when negative: it never narrows the interval), with the n - 1 degrees of freedom of `MS_prompts`. The
interval's half-width is `sqrt(t(S - 1)^2 * seeds' part + t(n - 1)^2 * prompts' part)`: each part scaled by its own t
quantile, exact when either part is 0. One t for the sum, with Satterthwaite's pooled degrees of freedom, covered
87.7-89.6% where it said 90% (3 seeds, 96 prompts): the degrees of freedom it estimates are largest where the seeds'
part happens to come out small. Satterthwaite's degrees of freedom for the prompts' part alone fall towards 0 where
`MS_prompts` is close to `MS_residual`, and its t quantile then explodes (a 0/1 win indicator gave an interval of
+-3.8 million points); the part is small there, and `MS_prompts`' own n - 1 keep it so. With one seed the interval is
the paired t-interval over prompts (n - 1 degrees of freedom), which says nothing about another seed.

The two-level bootstrap it replaces (seeds and prompts resampled independently, percentile interval) covered
71.5-91.0% where it said 90% at 3 seeds, below 81% wherever a run's mean moves by 0.2 std from seed to seed: it cannot
see more seed variance than 3 seeds show, and treats them as if they were many. This interval covers 89.9-94.2% on
the same grids. `bench/interval_coverage.py` prints the simulated coverage of both (bench/results/
interval_coverage.md); docs/RESULTS.md ("How results are judged") states it.

Equal preference (`equal_within`): two one-sided tests (TOST) at the report's level, each at (1 - level) / 2: the
difference is shown to lie within +-margin when the report's interval lies inside (-margin, +margin).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.90  # every interval the frontier reports; TOST tests each side at (1 - LEVEL) / 2

EQUAL = "equal"  # shown within +-margin
DIFFERENT = "different"  # shown beyond the margin, on one side
NOT_SHOWN = "not shown"  # neither: the interval reaches both inside and outside the margin


@dataclass(frozen=True)
class MeanEstimate:
    """A mean over `seeds` x `prompts` values, and the parts of its variance, each with its degrees of freedom."""

    mean: float
    parts: tuple[tuple[float, float], ...]  # (variance of the mean, degrees of freedom) of each part
    seeds: int
    prompts: int

    @property
    def se(self) -> float:
        return math.sqrt(sum(variance for variance, _ in self.parts))

    def half_width(self, level: float = LEVEL) -> float:
        """sqrt(sum of t(df_i)^2 * variance_i): each part scaled by its own t quantile (module docstring)."""
        p = (1 + level) / 2
        return math.sqrt(sum(t_quantile(p, df) ** 2 * variance for variance, df in self.parts if variance > 0))

    def interval(self, level: float = LEVEL, center: float | None = None) -> list[float]:
        """`center` (the mean unless given) +- `half_width`: a two-sided `level` interval."""
        center = self.mean if center is None else center
        half = self.half_width(level)
        return [center - half, center + half]


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (the normal's for infinite df)."""
    from scipy import stats

    return float(stats.norm.ppf(p)) if math.isinf(df) else float(stats.t.ppf(p, df))


def finite_columns(tables: Sequence) -> list:
    """The (seeds x prompts) tables with every prompt (column) left out where any table holds a missing or non-finite
    value, so that they keep the same prompts. Each table as a numpy array of floats."""
    import numpy as np

    arrays = [np.asarray(t, dtype=float) for t in tables]
    keep = np.logical_and.reduce([np.isfinite(a).all(axis=0) for a in arrays])
    return [a[:, keep] for a in arrays]


def seeds_prompts_mean(table) -> MeanEstimate | None:
    """The mean of a (seeds x prompts) table, with the two parts of its variance (module docstring).

    Args:
        table: shape (S, n): S seeds (rows) evaluated on the same n prompts (columns); finite values.

    Returns:
        With S >= 2: the seeds' part MS_seeds / (S n), MS_seeds = n * var(row means), with S - 1 degrees of freedom;
        the prompts' part max(MS_prompts - MS_residual, 0) / (S n), MS_prompts = S * var(column means) and
        MS_residual the two-way residual mean square, with n - 1 degrees of freedom (MS_prompts'). With S = 1: one
        part, var(row) / n with n - 1 degrees of freedom. None for an empty table or one seed of one prompt.
    """
    import numpy as np

    d = np.asarray(table, dtype=float)
    if d.ndim != 2 or d.size == 0:
        return None
    seeds, prompts = d.shape
    mean = float(d.mean())
    if seeds == 1:
        if prompts < 2:
            return None
        return MeanEstimate(mean, ((float(d[0].var(ddof=1)) / prompts, float(prompts - 1)),), 1, prompts)
    rows, columns = d.mean(axis=1), d.mean(axis=0)
    ms_seeds = prompts * float(((rows - mean) ** 2).sum()) / (seeds - 1)
    parts = [(ms_seeds / (seeds * prompts), float(seeds - 1))]
    if prompts >= 2:
        residual = d - rows[:, None] - columns[None, :] + mean
        ms_prompts = seeds * float(((columns - mean) ** 2).sum()) / (prompts - 1)
        ms_residual = float((residual ** 2).sum()) / ((seeds - 1) * (prompts - 1))
        if ms_prompts > ms_residual:
            parts.append(((ms_prompts - ms_residual) / (seeds * prompts), float(prompts - 1)))
    return MeanEstimate(mean, tuple(parts), seeds, prompts)


def one_sided_quantile(estimate: MeanEstimate, p: float) -> float:
    """The bound `q` with P(mean - truth > q) = p as the interval treats it: `half_width` at level 1 - 2p, and its
    negative for p > 1/2 (each part's t quantile is then negative)."""
    if p == 0.5:
        return 0.0
    half = math.sqrt(sum(t_quantile(1 - p, df) ** 2 * v for v, df in estimate.parts if v > 0))
    return half if p < 0.5 else -half


def equal_within(estimate: MeanEstimate, margin: float, level: float = LEVEL,
                 center: float | None = None) -> dict:
    """Two one-sided tests of `|difference| < margin` at `level` (each side at (1 - level) / 2).

    Returns `{"outcome", "p", "interval"}`: outcome `EQUAL` when both one-sided tests reject (the `level` interval
    lies inside (-margin, +margin)), `DIFFERENT` when the interval lies wholly beyond +margin or below -margin, else
    `NOT_SHOWN`; `interval` the `level` interval; `p` the TOST p-value, the larger of the two one-sided ones (the p at
    which the one-sided bound nearer the margin reaches it: with one part, 1 - F_t((margin - |center|) / se)), so
    that EQUAL is `p < (1 - level) / 2`.
    """
    from scipy.optimize import brentq

    center = estimate.mean if center is None else center
    interval = estimate.interval(level, center)
    room = margin - abs(center)
    if estimate.se == 0:
        p = 0.0 if room > 0 else 1.0
    else:
        p = brentq(lambda q: one_sided_quantile(estimate, q) - room, 1e-15, 1 - 1e-15, xtol=1e-14)
    if -margin < interval[0] and interval[1] < margin:
        outcome = EQUAL
    elif interval[0] > margin or interval[1] < -margin:
        outcome = DIFFERENT
    else:
        outcome = NOT_SHOWN
    return {"outcome": outcome, "p": float(p), "interval": interval}
