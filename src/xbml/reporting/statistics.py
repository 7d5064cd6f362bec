"""Paired comparisons of two methods over training seeds.

Runs with the same seed see the same batches and start from the same weights
(method.md: "every comparison is paired"), so a method is compared with the
baseline through its per-seed differences d_s = metric(method, s) - metric(baseline, s):

- the mean difference;
- a percentile bootstrap confidence interval of that mean (seeds resampled with
  replacement, a fixed RNG seed so the report is the same every time);
- a paired t-test (a one-sample t-test of the differences against 0).

With a handful of seeds all three are weak: a bootstrap over 3 seeds has only 10
distinct resamples and is too narrow, and the t-test has little power. The
report says so next to the numbers. (The Wilcoxon signed-rank test is no way out:
with n seeds its smallest two-sided p-value is 2 / 2**n, 0.25 for 3 seeds.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_SEED = 20230713  # fixed: the same results give the same report
TEST_NAME = "paired t-test"


@dataclass(frozen=True)
class PairedComparison:
    """One metric of one method against the baseline on one split."""

    method: str
    baseline: str
    metric: str
    split: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]  # per seed, method - baseline, in `seeds` order
    mean: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float  # nan when it cannot be computed (one seed)
    test: str = TEST_NAME

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def significant(self) -> bool:
        """The bootstrap interval excludes 0 (needs at least two seeds)."""
        return self.n >= 2 and (self.ci_low > 0 or self.ci_high < 0)

    @property
    def direction(self) -> str:
        if not self.significant:
            return "no significant change"
        return "better" if self.mean > 0 else "worse"


def paired_differences(method: dict[int, float], baseline: dict[int, float]) -> tuple[tuple[int, ...], np.ndarray]:
    """Per-seed differences over the seeds both have, sorted by seed; NaNs are dropped."""
    seeds = sorted(
        s for s in set(method) & set(baseline)
        if not (math.isnan(float(method[s])) or math.isnan(float(baseline[s])))
    )
    diffs = np.array([float(method[s]) - float(baseline[s]) for s in seeds], dtype=np.float64)
    return tuple(int(s) for s in seeds), diffs


def bootstrap_ci(
    values, confidence: float = 0.95, samples: int = 10000, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (resampled with replacement)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError("bootstrap_ci needs a non-empty 1-d array of values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if len(x) == 1 or np.all(x == x[0]):
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(int(samples), len(x)))
    means = x[idx].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_t_test(differences) -> float:
    """Two-sided p-value of H0: mean difference = 0 (a paired t-test on the differences)."""
    d = np.asarray(differences, dtype=np.float64)
    if len(d) < 2:
        return float("nan")
    sd = d.std(ddof=1)
    if sd == 0:  # identical differences: t is infinite unless they are all 0
        return 1.0 if d[0] == 0 else 0.0
    from scipy import stats

    return float(stats.ttest_1samp(d, 0.0).pvalue)


def compare(
    method_name: str,
    baseline_name: str,
    metric: str,
    split: str,
    method: dict[int, float],
    baseline: dict[int, float],
    confidence: float = 0.95,
    samples: int = 10000,
) -> PairedComparison | None:
    """The paired comparison of `method` vs `baseline` (seed -> value), or None without shared seeds."""
    seeds, d = paired_differences(method, baseline)
    if len(d) == 0:
        return None
    low, high = bootstrap_ci(d, confidence, samples)
    return PairedComparison(
        method=method_name, baseline=baseline_name, metric=metric, split=split, seeds=seeds,
        differences=tuple(float(v) for v in d), mean=float(d.mean()), ci_low=low, ci_high=high,
        confidence=confidence, p_value=paired_t_test(d),
    )


def _decimals(*values: float) -> int:
    big = max(abs(v) for v in values)
    return 3 if big >= 0.001 or big == 0 else 4


def format_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    return f"= {p:.3f}" if p < 0.1 else f"= {p:.2f}"


def describe(c: PairedComparison, metric_label: str) -> str:
    """One sentence, e.g. 'xml improves MAP@R by +0.012 [0.004, 0.020] over 5 seeds (...)'."""
    k = _decimals(c.mean, c.ci_low, c.ci_high)
    ci = f"[{c.ci_low:+.{k}f}, {c.ci_high:+.{k}f}]"
    seeds = f"{c.n} seed{'s' if c.n != 1 else ''}"
    if c.n < 2:
        return (
            f"{c.method} changes {metric_label} by {c.mean:+.{k}f} compared with {c.baseline} "
            f"on {seeds}: one paired run cannot show whether that is more than seed noise."
        )
    level = f"{round(c.confidence * 100):d}%"
    stats = f"{level} bootstrap CI over seeds; {c.test} p {format_p(c.p_value)}"
    if c.significant:
        verb = "improves" if c.mean > 0 else "worsens"
        return f"{c.method} {verb} {metric_label} by {c.mean:+.{k}f} {ci} over {seeds} compared with {c.baseline} ({stats})."
    return (
        f"{c.method} does not significantly change {metric_label} compared with {c.baseline}: "
        f"{c.mean:+.{k}f} {ci} over {seeds} ({stats}; the interval covers 0)."
    )
