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
- an equivalence test (TOST, two one-sided tests) with a margin declared before the run
  (report.equivalence_margin): H0 "the effect is at most -margin or at least +margin" is rejected
  when both one-sided tests reject at alpha: the exact sign-flip test of d + margin > 0 and of
  d - margin < 0 (the default, the same test as the difference test, shifted), or the paired t
  test of each. Its p is the larger of the two; the (1 - 2 alpha) t interval (90% at alpha 0.05)
  is reported either way: the t TOST holds exactly when it lies inside +-margin;
- Holm's step-down correction within a family. One comparison (or a few) is declared primary
  in the config before the run: it is its own family. Every other test is exploratory and is
  corrected within its split (test and validation are read separately).

Verdict (`verdict`): "better"/"worse" where the adjusted p < alpha and the interval excludes 0,
with "(within +-margin)" added where the equivalence test also holds (a real but small effect);
otherwise "equivalent within +-margin" where the equivalence test holds; otherwise
"inconclusive": these seeds cannot tell, which is not evidence of no effect.

What small n can do: the exact test's smallest two-sided p-value is 2 / 2**n
(every difference of one sign), so with n <= 5 seeds (2 / 32 = 0.0625) no
difference can reach p < 0.05, and with m tests in a family Holm multiplies the
smallest p by m, so significance needs m * 2 / 2**n < alpha. Each one-sided test of the TOST
can reach 1 / 2**n, so equivalence needs n >= 5. The smallest difference the seeds resolve is
the half-width of the t interval from the observed seed-to-seed sd of the differences.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

TEST_NAME = "exact sign-flip test"
INTERVAL_NAME = "t interval"
CORRECTION_NAME = "Holm"
BETTER, WORSE, INCONCLUSIVE = "better", "worse", "inconclusive"
EQUIVALENT = "equivalent"
PRIMARY_FAMILY, EXPLORATORY_FAMILY = "primary", "exploratory"
#: how the equivalence test is computed (report.equivalence_test)
EQUIVALENCE_TESTS = ("sign_flip", "t")
EQUIVALENCE_NAMES = {"sign_flip": "exact sign-flip TOST", "t": "paired t TOST"}
# 2**24 sign assignments (~17 million) still take about a second; beyond that the exact test is not practical
MAX_EXACT_SEEDS = 24
_CHUNK_BITS = 16  # enumerate 2**16 sign assignments at a time to bound memory
#: the power a planned rerun is sized for
PLANNED_POWER = 0.8
_MAX_PLANNED_SEEDS = 1000
_POWER_MAX_SEEDS = 16  # the simulated power enumerates 2**n sign assignments per simulation


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
    margin: float = math.nan  # the declared equivalence margin
    equivalence_test: str = "sign_flip"
    equivalence_p: float = math.nan  # TOST p (the larger one-sided p); nan with one seed
    eq_low: float = math.nan  # the (1 - 2 alpha) t interval, where the t TOST looks
    eq_high: float = math.nan
    family: str = EXPLORATORY_FAMILY
    p_adjusted: float = math.nan  # Holm over the comparison's family; nan until `holm_adjust` ran
    equivalence_p_adjusted: float = math.nan
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
    def eq_level(self) -> float:
        return round(1.0 - 2 * self.alpha, 12)

    @property
    def primary(self) -> bool:
        return self.family == PRIMARY_FAMILY

    @property
    def verdict(self) -> str:
        return verdict(self.mean, self.ci_low, self.ci_high, self.p_adjusted, self.alpha,
                       self.equivalence_p_adjusted, self.margin)

    @property
    def sd(self) -> float:
        return float(np.std(self.differences, ddof=1)) if self.n > 1 else math.nan


def margin_text(margin: float) -> str:
    return f"\u00b1{margin:g}"


def verdict(mean: float, ci_low: float, ci_high: float, p_adjusted: float, alpha: float = 0.05,
            equivalence_p: float = math.nan, margin: float = math.nan) -> str:
    """A significant difference first ('better'/'worse', both the adjusted p < alpha and the
    interval excluding 0), marked '(within +-margin)' where the equivalence test also holds; then
    'equivalent within +-margin'; everything else is 'inconclusive'."""
    equivalent = not math.isnan(equivalence_p) and equivalence_p < alpha
    different = not (math.isnan(p_adjusted) or math.isnan(ci_low)) and p_adjusted < alpha
    direction = BETTER if different and ci_low > 0 else WORSE if different and ci_high < 0 else ""
    if direction:
        return f"{direction} (within {margin_text(margin)})" if equivalent else direction
    if equivalent:
        return f"{EQUIVALENT} within {margin_text(margin)}"
    return INCONCLUSIVE


def verdict_kind(text: str) -> str:
    """better / worse / equivalent / inconclusive: the first word of a verdict."""
    return text.split(" ", 1)[0]


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


def smallest_one_sided_p(n: int) -> float:
    """The smallest p each one-sided test of the sign-flip TOST can give with n seeds."""
    return min(1.0, 1.0 / 2 ** n) if n >= 1 else math.nan


def seeds_for_a_verdict(alpha: float = 0.05, tests: int = 1) -> int:
    """The fewest seeds with which the exact test can reach p < alpha after Holm over `tests`."""
    n = 1
    while tests * smallest_p(n) >= alpha:
        n += 1
    return n


def _as_differences(values) -> np.ndarray:
    d = np.asarray(values, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0 or not np.all(np.isfinite(d)):
        raise ValueError("need a non-empty 1-d array of finite differences")
    return d


def _signed_sums(d: np.ndarray):
    """The sums of every sign assignment of d, 2**16 at a time."""
    n = len(d)
    if n > MAX_EXACT_SEEDS:
        raise ValueError(f"the exact sign-flip test enumerates 2**n assignments; {n} seeds is above {MAX_EXACT_SEEDS}")
    bits = np.arange(n)
    step = 2 ** min(n, _CHUNK_BITS)
    for start in range(0, 2 ** n, step):
        codes = np.arange(start, start + step, dtype=np.int64)
        yield (1.0 - 2.0 * ((codes[:, None] >> bits) & 1)) @ d


def sign_flip_p_value(differences, alternative: str = "two-sided") -> float:
    """Exact p of H0 'the differences are symmetric about 0' (nan for one difference).

    alternative: 'two-sided' (|sum| at least the observed), 'greater' (sum at least the observed:
    evidence that the centre is above 0) or 'less'."""
    d = _as_differences(differences)
    if len(d) < 2:
        return math.nan
    # the sum orders assignments exactly as the mean does; sums of differently signed floats round
    # differently, so equal in exact arithmetic must count as a tie
    tolerance = 1e-9 * float(np.abs(d).sum())
    observed = float(d.sum())
    at_least = 0
    for sums in _signed_sums(d):
        if alternative == "two-sided":
            at_least += int(np.count_nonzero(np.abs(sums) >= abs(observed) - tolerance))
        elif alternative == "greater":
            at_least += int(np.count_nonzero(sums >= observed - tolerance))
        elif alternative == "less":
            at_least += int(np.count_nonzero(sums <= observed + tolerance))
        else:
            raise ValueError(f"alternative must be two-sided, greater or less, got {alternative!r}")
    return at_least / 2 ** len(d)


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


def _t_one_sided(d: np.ndarray, shift: float, alternative: str) -> float:
    """p of the paired t test of mean(d) > shift ('greater') or < shift ('less')."""
    from scipy import stats

    mean, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(len(d))
    if se == 0:  # every difference equal: the side is certain
        holds = mean > shift if alternative == "greater" else mean < shift
        return 0.0 if holds else 1.0
    t = (mean - shift) / se
    return float(stats.t.sf(t, len(d) - 1) if alternative == "greater" else stats.t.cdf(t, len(d) - 1))


def tost(differences, margin: float, method: str = "sign_flip") -> tuple[float, float]:
    """(p of 'effect > -margin', p of 'effect < +margin'): the two one-sided tests of equivalence
    within +-margin; equivalence holds at alpha when both are below it. nan for one difference."""
    d = _as_differences(differences)
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be positive, got {margin}")
    if len(d) < 2:
        return math.nan, math.nan
    if method == "sign_flip":
        return sign_flip_p_value(d + margin, "greater"), sign_flip_p_value(d - margin, "less")
    if method == "t":
        return _t_one_sided(d, -margin, "greater"), _t_one_sided(d, margin, "less")
    raise ValueError(f"equivalence test must be one of {', '.join(EQUIVALENCE_TESTS)}, got {method!r}")


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
    margin: float = 0.01,
    equivalence_test: str = "sign_flip",
    family: str = EXPLORATORY_FAMILY,
) -> PairedComparison | None:
    """The unadjusted paired comparison of `method` vs `baseline` (seed -> value), or None
    without shared seeds; `holm_adjust` fills in the adjusted p-values over a family."""
    seeds, d = paired_differences(method, baseline)
    if len(d) == 0:
        return None
    low, high = t_interval(d, confidence)
    alpha = round(1.0 - confidence, 12)
    eq_low, eq_high = t_interval(d, 1 - 2 * alpha) if 2 * alpha < 1 else (math.nan, math.nan)
    p_low, p_high = tost(d, margin, equivalence_test)
    return PairedComparison(
        method=method_name, baseline=baseline_name, metric=metric, split=split, seeds=seeds,
        differences=tuple(float(v) for v in d), mean=float(d.mean()), ci_low=low, ci_high=high,
        confidence=confidence, p_value=sign_flip_p_value(d), margin=margin, equivalence_test=equivalence_test,
        equivalence_p=max(p_low, p_high), eq_low=eq_low, eq_high=eq_high, family=family,
    )


def family_key(c: PairedComparison) -> tuple[str, str]:
    """The primary comparisons form one family; exploratory ones one family per split."""
    return (PRIMARY_FAMILY, "") if c.primary else (EXPLORATORY_FAMILY, c.split)


def holm_adjust(comparisons: list[PairedComparison]) -> list[PairedComparison]:
    """The comparisons with both p-values Holm-adjusted within their family (`family_key`)."""
    out = list(comparisons)
    for key in dict.fromkeys(family_key(c) for c in comparisons):
        index = [i for i, c in enumerate(comparisons) if family_key(c) == key]
        adjusted = holm([comparisons[i].p_value for i in index])
        equivalence = holm([comparisons[i].equivalence_p for i in index])
        size = sum(not math.isnan(comparisons[i].p_value) for i in index)
        for i, p, q in zip(index, adjusted, equivalence):
            out[i] = dataclasses.replace(comparisons[i], p_adjusted=p, equivalence_p_adjusted=q, family_size=size)
    return out


def planned_seeds(sd: float, effect: float, margin: float, alpha: float = 0.05,
                  power: float = PLANNED_POWER) -> tuple[int | None, int | None]:
    """Seeds a planned rerun needs, from an observed sd of the differences (paired t
    approximation, at least what the exact tests need):
    (to detect a difference of `effect` with the given power, two-sided at alpha;
     to show equivalence within +-margin with that power when the true difference is 0).
    None where even _MAX_PLANNED_SEEDS would not do, or where the sd is unknown."""
    if not (sd > 0 and math.isfinite(sd)):
        return None, None
    from scipy import stats

    beta = 1 - power

    def first(floor: int, quantiles: tuple[float, float], target: float) -> int | None:
        n = np.arange(max(2, floor), _MAX_PLANNED_SEEDS + 1)
        needed = (stats.t.ppf(quantiles[0], n - 1) + stats.t.ppf(quantiles[1], n - 1)) * sd / np.sqrt(n)
        hits = np.flatnonzero(needed <= target)
        return int(n[hits[0]]) if len(hits) else None

    difference = first(seeds_for_a_verdict(alpha), (1 - alpha / 2, power), abs(effect)) if abs(effect) > 0 else None
    n_equivalence_floor = next(n for n in range(1, 64) if smallest_one_sided_p(n) < alpha)
    equivalence = first(n_equivalence_floor, (1 - alpha, 1 - beta / 2), margin)
    return difference, equivalence


def simulated_power(effect: float, sd: float, n: int, alpha: float = 0.05, tests: int = 1,
                    simulations: int = 4000, seed: int = 0) -> float:
    """Chance that n seeds call a true effect `effect` better or worse (exact sign-flip p * tests
    < alpha and the t interval excluding 0), for normal per-seed differences with this sd:
    a fixed-seed simulation, so the same inputs give the same figure."""
    if n < 2 or not sd > 0 or n > _POWER_MAX_SEEDS:
        return math.nan
    from scipy import stats

    rng = np.random.default_rng(seed)
    d = rng.normal(effect, sd, size=(simulations, n))
    signs = 1.0 - 2.0 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    calls = 0
    batch = max(1, 2 ** 22 // 2 ** n)  # bounds the simulations x 2**n sums in memory
    half_factor = stats.t.ppf(1 - alpha / 2, n - 1) / math.sqrt(n)
    for start in range(0, simulations, batch):
        part = d[start:start + batch]
        observed = np.abs(part.sum(axis=1, keepdims=True))
        tolerance = 1e-9 * np.abs(part).sum(axis=1, keepdims=True)
        p = np.mean(np.abs(part @ signs.T) >= observed - tolerance, axis=1)
        excludes = np.abs(part.mean(axis=1)) > half_factor * part.std(axis=1, ddof=1)
        calls += int(np.count_nonzero((np.minimum(1.0, p * tests) < alpha) & excludes))
    return calls / simulations


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


def plan_note(c: PairedComparison) -> str:
    """For an inconclusive result: the seeds a planned rerun would need, and why adding seeds to
    this one is not the same thing."""
    difference, equivalence = planned_seeds(c.sd, c.mean, c.margin, c.alpha)
    if c.n < 2:
        return ("one paired run gives no test: plan a rerun with at least "
                f"{seeds_for_a_verdict(c.alpha, max(1, c.family_size))} seeds")
    parts = []
    if difference is not None:
        parts.append(f"about {difference} seeds to detect a difference of {c.mean:+.4f}")
    if equivalence is not None:
        parts.append(f"about {equivalence} seeds to show equivalence within {margin_text(c.margin)} if the true "
                     "difference is 0")
    if not parts:
        return ""
    return (f"from the observed sd of the differences ({c.sd:.4f}), a planned rerun needs {' or '.join(parts)} "
            f"({round(PLANNED_POWER * 100)}% power); adding seeds to this run after looking at it is optional "
            "stopping and invalidates its p-values")


def describe(c: PairedComparison, metric_label: str) -> str:
    """One plain sentence with the verdict, the numbers and what the seeds can and cannot show."""
    k = _decimals(c.mean, c.ci_low, c.ci_high)
    seeds = f"{c.n} seed{'s' if c.n != 1 else ''}"
    if c.n < 2:
        return (
            f"{c.method} changes {metric_label} by {c.mean:+.{k}f} compared with {c.baseline} "
            f"on {seeds}: inconclusive, one paired run cannot show whether that is more than seed noise; "
            f"{plan_note(c)}."
        )
    level = f"{round(c.confidence * 100):d}%"
    ci = f"{level} CI [{c.ci_low:+.{k}f}, {c.ci_high:+.{k}f}]"
    family = f", Holm over {c.family_size} tests" if c.family_size > 1 else ""
    stats = f"{TEST_NAME} p {format_p(c.p_value)}, adjusted p {format_p(c.p_adjusted)}{family}"
    eq_level = f"{round(c.eq_level * 100):d}%"
    equivalence = (f"{EQUIVALENCE_NAMES.get(c.equivalence_test, c.equivalence_test)} within "
                   f"{margin_text(c.margin)}: p {format_p(c.equivalence_p)}"
                   + (f", adjusted p {format_p(c.equivalence_p_adjusted)}" if c.family_size > 1 else "")
                   + f"; {eq_level} t interval [{c.eq_low:+.{k}f}, {c.eq_high:+.{k}f}]")
    kind = verdict_kind(c.verdict)
    if kind in (BETTER, WORSE):
        verb = "improves" if kind == BETTER else "worsens"
        small = f", by less than the margin {margin_text(c.margin)}" if "within" in c.verdict else ""
        return (f"{c.method} {verb} {metric_label} by {c.mean:+.{k}f} ({ci}) over {seeds} compared with "
                f"{c.baseline}{small} ({stats}; {equivalence}).")
    if kind == EQUIVALENT:
        return (f"{c.method} vs {c.baseline} on {metric_label}: equivalent within {margin_text(c.margin)}, "
                f"{c.mean:+.{k}f} ({ci}) over {seeds} ({equivalence}; {stats}): any effect is smaller than the "
                "margin.")
    why = floor_note(c.n, c.family_size, c.alpha)
    if not why:
        why = (f"differences smaller than \u00b1{c.half_width:.{k}f} (the interval's half-width) cannot be told "
               "from seed noise here")
    plan = plan_note(c)
    return (f"{c.method} vs {c.baseline} on {metric_label}: inconclusive, {c.mean:+.{k}f} ({ci}) over {seeds} "
            f"({stats}; {equivalence}); neither a difference nor equivalence is shown: {why}"
            + (f"; {plan}" if plan else "") + ".")
