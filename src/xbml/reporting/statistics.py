"""Paired comparisons of two methods over training seeds, valid at small n.

Runs with the same seed see the same batches and start from the same weights
(method.md: "every comparison is paired"), so a method is compared with the
baseline through its per-seed differences d_s = metric(method, s) - metric(baseline, s):

- the mean difference;
- a t-based confidence interval of that mean, mean +- t(1 - alpha/2, n-1) * sd / sqrt(n)
  (alpha = 1 - report.confidence, 0.05 by default);
- an exact paired sign-flip permutation test: under H0 (no effect) each d_s is as
  likely to have come out with the opposite sign, so all 2**n sign assignments are
  enumerated and the two-sided p-value is the fraction of them whose |mean| is at
  least the observed |mean| (ties within a float tolerance count). It assumes no
  distribution, only that the differences are symmetric about 0 under H0;
- Holm's step-down correction of those p-values. The family is every (run x metric)
  test that one report makes on one split: the test split answers "which method is
  better", the validation split is for model selection, and the two are read
  separately, so each split is its own family.

Verdict: "better" or "worse" only where the Holm-adjusted p < alpha AND the
interval excludes 0 (the two are different tests, both must agree); otherwise
"not significant".

What small n can do: the exact test's smallest two-sided p-value is 2 / 2**n
(every difference of one sign), so with n <= 5 seeds (2 / 32 = 0.0625) no
difference can reach p < 0.05, and with m tests in a family Holm multiplies the
smallest p by m, so significance needs m * 2 / 2**n < alpha. The smallest
difference the seeds resolve is reported as the half-width of the t interval,
t(1 - alpha/2, n-1) * sd / sqrt(n), from the observed seed-to-seed sd of the
differences: a mean difference smaller than that cannot give an interval that
excludes 0.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

TEST_NAME = "exact sign-flip test"
INTERVAL_NAME = "t interval"
CORRECTION_NAME = "Holm"
BETTER, WORSE, NOT_SIGNIFICANT = "better", "worse", "not significant"
# 2**24 sign assignments (~17 million) still take about a second; beyond that the exact test is not practical
MAX_EXACT_SEEDS = 24
_CHUNK_BITS = 16  # enumerate 2**16 sign assignments at a time to bound memory


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
    ci_low: float  # nan with one seed
    ci_high: float
    confidence: float
    p_value: float  # exact sign-flip p; nan with one seed
    p_adjusted: float = math.nan  # Holm over the comparison's family; nan until `holm_adjust` ran
    family_size: int = 0  # how many tests share the Holm correction

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def alpha(self) -> float:
        return round(1.0 - self.confidence, 12)  # 1 - 0.95 is 0.050000000000000044 in floats

    @property
    def half_width(self) -> float:
        """The smallest mean difference these seeds resolve (nan with one seed)."""
        return (self.ci_high - self.ci_low) / 2

    @property
    def verdict(self) -> str:
        return verdict(self.mean, self.ci_low, self.ci_high, self.p_adjusted, self.alpha)


def verdict(mean: float, ci_low: float, ci_high: float, p_adjusted: float, alpha: float = 0.05) -> str:
    """'better'/'worse' only when the adjusted p < alpha and the interval excludes 0."""
    if math.isnan(p_adjusted) or math.isnan(ci_low) or not p_adjusted < alpha:
        return NOT_SIGNIFICANT
    if ci_low > 0:
        return BETTER
    if ci_high < 0:
        return WORSE
    return NOT_SIGNIFICANT


def paired_differences(method: dict[int, float], baseline: dict[int, float]) -> tuple[tuple[int, ...], np.ndarray]:
    """Per-seed differences over the seeds both have, sorted by seed; NaNs are dropped
    (the report names every dropped seed)."""
    seeds = sorted(
        s for s in set(method) & set(baseline)
        if not (math.isnan(float(method[s])) or math.isnan(float(baseline[s])))
    )
    diffs = np.array([float(method[s]) - float(baseline[s]) for s in seeds], dtype=np.float64)
    return tuple(int(s) for s in seeds), diffs


def smallest_p(n: int) -> float:
    """The smallest two-sided p-value the exact sign-flip test can give with n seeds."""
    return min(1.0, 2.0 / 2 ** n) if n >= 1 else math.nan


def _as_differences(values) -> np.ndarray:
    d = np.asarray(values, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0 or not np.all(np.isfinite(d)):
        raise ValueError("need a non-empty 1-d array of finite differences")
    return d


def sign_flip_p_value(differences) -> float:
    """Exact two-sided p of H0 'the differences are symmetric about 0' (nan for one difference)."""
    d = _as_differences(differences)
    n = len(d)
    if n < 2:
        return math.nan
    if n > MAX_EXACT_SEEDS:
        raise ValueError(f"the exact sign-flip test enumerates 2**n assignments; {n} seeds is above {MAX_EXACT_SEEDS}")
    observed = abs(d.sum())  # the sum orders assignments exactly as the mean does
    # sums of differently signed floats round differently: equal in exact arithmetic must count as a tie
    tolerance = 1e-9 * float(np.abs(d).sum())
    bits = np.arange(n)
    at_least = 0
    total = 2 ** n
    step = 2 ** min(n, _CHUNK_BITS)
    for start in range(0, total, step):
        codes = np.arange(start, start + step, dtype=np.int64)
        signs = 1.0 - 2.0 * ((codes[:, None] >> bits) & 1)
        at_least += int(np.count_nonzero(np.abs(signs @ d) >= observed - tolerance))
    return at_least / total


def t_interval(differences, confidence: float = 0.95) -> tuple[float, float]:
    """mean +- t(1 - alpha/2, n-1) * sd / sqrt(n); (nan, nan) for one difference."""
    d = _as_differences(differences)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if len(d) < 2:
        return math.nan, math.nan
    from scipy import stats

    mean = float(d.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, df=len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return mean - half, mean + half


def holm(p_values) -> list[float]:
    """Holm's step-down adjusted p-values, in input order; NaNs stay NaN and are not counted."""
    p = [float(v) for v in p_values]
    finite = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m = len(finite)
    adjusted = [math.nan] * len(p)
    running = 0.0
    for rank, (value, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * value))  # monotone: never below an earlier step
        adjusted[i] = running
    return adjusted


def compare(
    method_name: str,
    baseline_name: str,
    metric: str,
    split: str,
    method: dict[int, float],
    baseline: dict[int, float],
    confidence: float = 0.95,
) -> PairedComparison | None:
    """The unadjusted paired comparison of `method` vs `baseline` (seed -> value), or None
    without shared seeds; `holm_adjust` fills in p_adjusted over a family."""
    seeds, d = paired_differences(method, baseline)
    if len(d) == 0:
        return None
    low, high = t_interval(d, confidence)
    return PairedComparison(
        method=method_name, baseline=baseline_name, metric=metric, split=split, seeds=seeds,
        differences=tuple(float(v) for v in d), mean=float(d.mean()), ci_low=low, ci_high=high,
        confidence=confidence, p_value=sign_flip_p_value(d),
    )


def holm_adjust(comparisons: list[PairedComparison]) -> list[PairedComparison]:
    """The comparisons with p_adjusted, Holm-corrected within each split (one family per split)."""
    out = list(comparisons)
    for split in dict.fromkeys(c.split for c in comparisons):
        index = [i for i, c in enumerate(comparisons) if c.split == split]
        adjusted = holm([comparisons[i].p_value for i in index])
        size = sum(not math.isnan(comparisons[i].p_value) for i in index)
        for i, p in zip(index, adjusted):
            out[i] = dataclasses.replace(comparisons[i], p_adjusted=p, family_size=size)
    return out


def _decimals(*values: float) -> int:
    big = max((abs(v) for v in values if not math.isnan(v)), default=0.0)
    return 3 if big >= 0.001 or big == 0 else 4


def format_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    return f"= {p:.3f}" if p < 0.1 else f"= {p:.2f}"


def floor_note(n: int, family_size: int, alpha: float = 0.05) -> str:
    """Why a difference cannot be significant with these seeds, or '' when it can."""
    floor = smallest_p(n)
    if floor >= alpha:
        return (f"with {n} seeds the smallest possible p is 2/2^{n} = {floor:.3g}, so no difference can "
                f"reach p < {alpha:g}")
    if family_size > 1 and family_size * floor >= alpha:
        return (f"with {n} seeds and {family_size} tests, Holm's smallest possible adjusted p is "
                f"{family_size} x 2/2^{n} = {min(1.0, family_size * floor):.3g}, so no difference can reach "
                f"p < {alpha:g}")
    return ""


def describe(c: PairedComparison, metric_label: str) -> str:
    """One plain sentence with the verdict, the numbers and what the seeds can and cannot show."""
    k = _decimals(c.mean, c.ci_low, c.ci_high)
    seeds = f"{c.n} seed{'s' if c.n != 1 else ''}"
    if c.n < 2:
        return (
            f"{c.method} changes {metric_label} by {c.mean:+.{k}f} compared with {c.baseline} "
            f"on {seeds}: not significant, one paired run cannot show whether that is more than seed noise."
        )
    level = f"{round(c.confidence * 100):d}%"
    ci = f"{level} CI [{c.ci_low:+.{k}f}, {c.ci_high:+.{k}f}]"
    family = f", Holm over {c.family_size} tests" if c.family_size > 1 else ""
    stats = f"{TEST_NAME} p {format_p(c.p_value)}, adjusted p {format_p(c.p_adjusted)}{family}"
    if c.verdict in (BETTER, WORSE):
        verb = "improves" if c.verdict == BETTER else "worsens"
        return (f"{c.method} {verb} {metric_label} by {c.mean:+.{k}f} ({ci}) over {seeds} compared with "
                f"{c.baseline} ({stats}).")
    why = floor_note(c.n, c.family_size, c.alpha)
    if not why:
        why = (f"differences smaller than \u00b1{c.half_width:.{k}f} (the interval's half-width) cannot be told "
               "from seed noise here")
    return (f"{c.method} vs {c.baseline} on {metric_label}: not significant, {c.mean:+.{k}f} ({ci}) over {seeds} "
            f"({stats}); {why}.")
