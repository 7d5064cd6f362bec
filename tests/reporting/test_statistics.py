"""Paired statistics of the report on inputs whose answers are known."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from xbml.reporting.statistics import (
    BETTER,
    INCONCLUSIVE,
    PRIMARY_FAMILY,
    WORSE,
    planned_seeds,
    seeds_for_a_verdict,
    simulated_power,
    tost,
    compare,
    describe,
    floor_note,
    format_p,
    holm,
    holm_adjust,
    paired_differences,
    sign_flip_p_value,
    smallest_p,
    t_interval,
    verdict,
)


def _scipy_exact_paired_p(x, y) -> float:
    """scipy's permutation test, all 2**n within-pair swaps, statistic = mean paired difference."""
    res = stats.permutation_test(
        (np.asarray(x), np.asarray(y)), lambda a, b, axis: np.mean(a - b, axis=axis),
        permutation_type="samples", n_resamples=np.inf, alternative="two-sided", vectorized=True,
    )
    return float(res.pvalue)


# -- the exact sign-flip test ------------------------------------------------------------------------
@pytest.mark.parametrize("n, expected", [(3, 0.25), (5, 2 / 32), (6, 2 / 64)])
def test_all_positive_differences_give_the_smallest_possible_p(n, expected):
    d = np.linspace(0.01, 0.03, n)
    assert sign_flip_p_value(d) == pytest.approx(expected, abs=0)
    assert smallest_p(n) == expected


def test_hand_computed_p_with_one_negative_difference():
    # d = (1, 2, 3, -0.5): |sum| = 5.5; assignments with |sum| >= 5.5: all-same-sign (|6.5|),
    # flipping only the 0.5 entry's sign (|sum| = 5.5): (1,2,3,-0.5), (-1,-2,-3,0.5) -> 4 of 16
    assert sign_flip_p_value([1.0, 2.0, 3.0, -0.5]) == pytest.approx(4 / 16, abs=0)


def test_float_ties_count_as_ties():
    # 0.1 + 0.2 - 0.3 is not 0 in floats; every assignment of equal magnitudes ties in exact arithmetic
    assert sign_flip_p_value([0.1, 0.1, 0.1]) == 0.25
    assert sign_flip_p_value([0.1, 0.2, -0.3]) == 1.0  # observed sum 0: every assignment is as extreme


@pytest.mark.parametrize("seed", range(6))
def test_p_matches_scipy_exact_paired_permutation_test(seed):
    rng = np.random.default_rng(seed)
    n = 3 + seed  # 3..8 seeds
    base = rng.uniform(0.3, 0.7, n)
    method = base + rng.normal(0.01 * (seed - 2), 0.01, n)
    assert sign_flip_p_value(method - base) == pytest.approx(_scipy_exact_paired_p(method, base), abs=1e-12)
    # the one-sample form of the same test (scipy flips the signs of a single sample)
    one = stats.permutation_test((method - base,), lambda a, axis: np.mean(a, axis=axis), permutation_type="samples",
                                 n_resamples=np.inf, alternative="two-sided", vectorized=True)
    assert sign_flip_p_value(method - base) == pytest.approx(one.pvalue, abs=1e-12)


def test_p_by_brute_force_enumeration():
    d = np.array([0.012, -0.004, 0.020, 0.007, 0.015, 0.001, -0.009])
    sums = [abs(sum(s * v for s, v in zip(signs, d))) for signs in itertools.product((1, -1), repeat=len(d))]
    expected = sum(v >= abs(d.sum()) - 1e-12 for v in sums) / len(sums)
    assert sign_flip_p_value(d) == pytest.approx(expected, abs=0)


def test_one_difference_has_no_test_and_bad_input_is_rejected():
    assert math.isnan(sign_flip_p_value([0.3]))
    with pytest.raises(ValueError):
        sign_flip_p_value([])
    with pytest.raises(ValueError):
        sign_flip_p_value([0.1, float("nan")])
    with pytest.raises(ValueError):
        t_interval([0.1, 0.2], confidence=1.5)


# -- the t interval -------------------------------------------------------------------------------
def test_t_interval_is_the_textbook_formula():
    d = np.array([0.03, 0.01, 0.02, -0.005, 0.025])
    half = stats.t.ppf(0.975, df=4) * d.std(ddof=1) / math.sqrt(5)
    assert t_interval(d) == pytest.approx((d.mean() - half, d.mean() + half))
    lo, hi = stats.t.interval(0.9, df=4, loc=d.mean(), scale=stats.sem(d))
    assert t_interval(d, 0.9) == pytest.approx((lo, hi))
    assert all(math.isnan(v) for v in t_interval([0.1]))


# -- Holm -------------------------------------------------------------------------------------------
def test_holm_matches_a_hand_computed_example():
    # sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> kept monotone at 0.06)
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    adjusted = holm([0.02, float("nan"), 0.04])  # NaN is not a test: m = 2
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    assert holm([]) == []


def test_holm_adjust_makes_one_exploratory_family_per_split():
    base = {s: 0.5 + 0.01 * s for s in range(6)}
    up = {s: v + 0.01 + 0.001 * s for s, v in base.items()}
    comps = [compare(r, "baseline", m, split, up, base) for split in ("test", "val") for r in ("a", "b")
             for m in ("map_at_r", "precision_at_1")]
    adjusted = holm_adjust(comps)
    for c in adjusted:
        assert c.p_value == pytest.approx(2 / 64)
        assert c.family_size == 4  # 2 runs x 2 metrics of its split, not all 8
        assert c.p_adjusted == pytest.approx(4 * 2 / 64)
        assert c.verdict == INCONCLUSIVE  # 0.125 >= 0.05 although every difference is positive


# -- verdicts and words ------------------------------------------------------------------------------
def test_verdict_needs_both_the_adjusted_p_and_the_interval():
    assert verdict(0.01, 0.004, 0.02, 0.03) == BETTER
    assert verdict(-0.01, -0.02, -0.004, 0.03) == WORSE
    assert verdict(0.01, -0.001, 0.02, 0.03) == INCONCLUSIVE  # p small, interval covers 0
    assert verdict(0.01, 0.004, 0.02, 0.06) == INCONCLUSIVE  # interval excludes 0, p too large
    assert verdict(0.01, 0.004, 0.02, 0.05) == INCONCLUSIVE  # p must be below alpha
    assert verdict(0.01, math.nan, math.nan, math.nan) == INCONCLUSIVE


def test_six_constant_positive_differences_are_better_when_alone_in_their_family():
    base = {0: 0.50, 1: 0.55, 2: 0.60, 3: 0.52, 4: 0.58, 5: 0.51}
    method = {s: v + 0.01 for s, v in base.items()}
    (c,) = holm_adjust([compare("xml", "baseline", "map_at_r", "test", method, base)])
    assert c.mean == pytest.approx(0.01)
    assert (c.ci_low, c.ci_high) == pytest.approx((0.01, 0.01))
    assert c.p_value == pytest.approx(2 / 64) and c.p_adjusted == pytest.approx(2 / 64)
    assert c.verdict == BETTER
    text = describe(c, "MAP@R")
    assert text.startswith("xml improves MAP@R by +0.010 (95% CI [+0.010, +0.010]) over 6 seeds compared with baseline")
    assert "exact sign-flip test p = 0.031" in text


def test_five_seeds_can_never_be_significant_and_the_words_say_so():
    base = {0: 0.50, 1: 0.52, 2: 0.51, 3: 0.53, 4: 0.50}
    method = {s: v + 0.02 + 0.001 * s for s, v in base.items()}
    (c,) = holm_adjust([compare("xml", "baseline", "map_at_r", "test", method, base)])
    assert c.ci_low > 0 and c.p_value == pytest.approx(2 / 32)
    assert c.verdict == INCONCLUSIVE
    text = describe(c, "MAP@R")
    assert text.startswith("xml vs baseline on MAP@R: inconclusive, +0.022")
    assert "with 5 seeds the smallest possible p is 2/2^5 = 0.0625, so no difference can reach p < 0.05" in text


def test_holm_floor_and_the_resolution_are_stated():
    assert floor_note(3, 1) == "with 3 seeds the smallest possible p is 2/2^3 = 0.25, so no difference can reach p < 0.05"
    assert "Holm's smallest possible adjusted p is 21 x 2/2^7 = 0.328" in floor_note(7, 21)
    assert floor_note(10, 21) == ""  # 21 * 2/1024 = 0.041
    base = {s: 0.5 for s in range(10)}
    method = {s: 0.5 + (0.01 if s % 2 else -0.008) for s in range(10)}
    # a margin inside the spread of the differences: neither test can hold
    (c,) = holm_adjust([compare("xml", "baseline", "map_at_r", "test", method, base, margin=0.005)])
    assert c.verdict == INCONCLUSIVE
    assert f"differences smaller than \u00b1{c.half_width:.3f} (the interval's half-width)" in describe(c, "MAP@R")


def test_pairing_by_seed_and_worse():
    base = {0: 0.50, 1: 0.60, 2: 0.70, 3: 0.65, 4: 0.55, 5: 0.45, 7: 0.9}
    method = {2: 0.68, 0: 0.48, 1: 0.58, 3: 0.63, 4: 0.53, 5: 0.43, 6: 0.1}  # seeds 6 and 7 have no partner
    seeds, d = paired_differences(method, base)
    assert seeds == (0, 1, 2, 3, 4, 5)
    assert d == pytest.approx([-0.02] * 6)
    (c,) = holm_adjust([compare("xml", "baseline", "map_at_r", "test", method, base)])
    assert c.verdict == WORSE
    assert describe(c, "MAP@R").startswith("xml worsens MAP@R by -0.020")


def test_one_seed_has_no_test_and_no_seeds_no_comparison():
    (c,) = holm_adjust([compare("xml", "baseline", "map_at_r", "test", {0: 0.6}, {0: 0.5})])
    assert c.n == 1 and math.isnan(c.p_value) and math.isnan(c.p_adjusted) and c.family_size == 0
    assert c.verdict == INCONCLUSIVE
    assert "inconclusive, one paired run cannot show" in describe(c, "MAP@R")
    assert compare("xml", "baseline", "map_at_r", "test", {1: 0.6}, {0: 0.5}) is None
    assert format_p(float("nan")) == "n/a"


def test_identical_runs_on_three_seeds_are_inconclusive():
    base = {0: 0.5, 1: 0.6, 2: 0.7}
    (c,) = holm_adjust([compare("xml0", "baseline", "map_at_r", "test", dict(base), base)])
    assert (c.mean, c.ci_low, c.ci_high, c.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert c.verdict == INCONCLUSIVE


# -- primary family ---------------------------------------------------------------------------------
def test_the_primary_comparison_is_a_family_of_its_own():
    base = {s: 0.5 + 0.01 * s for s in range(6)}
    up = {s: v + 0.02 + 0.001 * s for s, v in base.items()}
    primary = compare("xml", "baseline", "map_at_r", "test", up, base, family=PRIMARY_FAMILY)
    exploratory = [compare("xml", "baseline", m, split, up, base) for split in ("test", "val")
                   for m in ("r_precision", "precision_at_1", "recall_at_2")]
    adjusted = holm_adjust([primary, *exploratory])
    assert adjusted[0].family_size == 1 and adjusted[0].p_adjusted == pytest.approx(2 / 64)
    assert adjusted[0].verdict == BETTER  # alone: 2/64 < 0.05; among 4 it would be 0.125
    assert {c.family_size for c in adjusted[1:]} == {3}
    assert all(c.p_adjusted == pytest.approx(3 * 2 / 64) and c.verdict == INCONCLUSIVE for c in adjusted[1:])


# -- the equivalence test (TOST) --------------------------------------------------------------------
def _scipy_sign_flip_one_sided(d, alternative):
    res = stats.permutation_test((np.asarray(d),), lambda a, axis: np.mean(a, axis=axis), permutation_type="samples",
                                 n_resamples=np.inf, alternative=alternative, vectorized=True)
    return float(res.pvalue)


def test_tost_by_hand():
    # margin 0.01; d + 0.01 = (0.011, 0.008, 0.012, 0.009, 0.013, 0.010): all positive -> 1/64;
    # d - 0.01 = (-0.009, -0.012, ...): all negative -> 1/64; equivalence p = 1/64
    d = [0.001, -0.002, 0.002, -0.001, 0.003, 0.0]
    assert tost(d, 0.01) == pytest.approx((1 / 64, 1 / 64), abs=0)
    # d - 0.01 = (-0.004, -0.006, 0.002): assignments with sum <= -0.008: (-,-,+) -0.008 and (-,-,-) -0.012,
    # (+,-,-) -0.004+... : enumerate: sums of (+-0.004, +-0.006, +-0.002) <= -0.008 -> (-,-,-)=-0.012,
    # (-,-,+)=-0.008, (+,-,-)=-0.004 no, (-,+,-)=-0.000 no -> 2 of 8
    assert tost([0.006, 0.004, 0.012], 0.01)[1] == pytest.approx(2 / 8, abs=0)
    # one difference: no test
    assert all(math.isnan(v) for v in tost([0.0], 0.01))
    with pytest.raises(ValueError):
        tost([0.0, 0.1], 0.0)
    with pytest.raises(ValueError):
        tost([0.0, 0.1], 0.01, method="bootstrap")


@pytest.mark.parametrize("seed", range(5))
def test_sign_flip_tost_matches_scipy_one_sided_permutation_tests(seed):
    rng = np.random.default_rng(100 + seed)
    n = 5 + seed
    d = rng.normal(0.003 * (seed - 2), 0.006, n)
    low, high = tost(d, 0.01, "sign_flip")
    assert low == pytest.approx(_scipy_sign_flip_one_sided(d + 0.01, "greater"), abs=1e-12)
    assert high == pytest.approx(_scipy_sign_flip_one_sided(d - 0.01, "less"), abs=1e-12)
    assert sign_flip_p_value(d, "greater") == pytest.approx(_scipy_sign_flip_one_sided(d, "greater"), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_t_tost_matches_scipy_and_the_interval_inside_the_margin(seed):
    rng = np.random.default_rng(200 + seed)
    d = rng.normal(0.002 * (seed - 2), 0.005, 6)
    low, high = tost(d, 0.01, "t")
    assert low == pytest.approx(stats.ttest_1samp(d, -0.01, alternative="greater").pvalue, rel=1e-10)
    assert high == pytest.approx(stats.ttest_1samp(d, 0.01, alternative="less").pvalue, rel=1e-10)
    # the t TOST at alpha holds exactly when the (1 - 2 alpha) interval lies within the margin
    lo, hi = t_interval(d, 0.90)
    assert (max(low, high) < 0.05) == (-0.01 < lo and hi < 0.01)


def test_t_tost_with_identical_differences():
    assert tost([0.004] * 4, 0.01, "t") == (0.0, 0.0)
    assert tost([0.02] * 4, 0.01, "t") == (0.0, 1.0)


# -- the verdict's precedence -----------------------------------------------------------------------
def _six(mean_shift, spread):
    base = {s: 0.5 + 0.013 * s for s in range(6)}
    return {s: v + mean_shift + spread * (s - 2.5) for s, v in base.items()}, base


@pytest.mark.parametrize("shift, spread, expected", [
    (0.004, 0.0002, "better (within \u00b10.01)"),   # every d in [0.0035, 0.0045]: different and small
    (-0.004, 0.0002, "worse (within \u00b10.01)"),
    (0.03, 0.001, "better"),                            # clearly above the margin
    (0.0, 0.002, "equivalent within \u00b10.01"),      # d straddle 0, all well inside the margin
    (0.0, 0.02, "inconclusive"),                        # straddle 0 and the margin
    (0.009, 0.004, "inconclusive"),                     # some d above the margin, one below 0
])
def test_verdict_precedence_on_hand_cases(shift, spread, expected):
    method, base = _six(shift, spread)
    (c,) = holm_adjust([compare("xml", "baseline", "map_at_r", "test", method, base, family=PRIMARY_FAMILY)])
    assert c.verdict == expected, (c.differences, c.p_adjusted, c.equivalence_p)
    text = describe(c, "test MAP@R")
    if expected == INCONCLUSIVE:
        assert "neither a difference nor equivalence is shown" in text
        assert "optional stopping" in text and "a planned rerun needs" in text
    if expected.startswith("equivalent"):
        assert "equivalent within \u00b10.01" in text and "90% t interval" in text


def test_verdict_function_precedence():
    assert verdict(0.004, 0.002, 0.006, 0.03, 0.05, 0.01, 0.01) == "better (within \u00b10.01)"
    assert verdict(0.004, 0.002, 0.006, 0.03, 0.05, 0.2, 0.01) == BETTER
    assert verdict(0.004, -0.002, 0.006, 0.03, 0.05, 0.01, 0.01) == "equivalent within \u00b10.01"
    assert verdict(0.004, -0.002, 0.006, 0.3, 0.05, 0.05, 0.01) == INCONCLUSIVE  # p must be below alpha
    assert verdict(0.004, math.nan, math.nan, math.nan, 0.05, math.nan, 0.01) == INCONCLUSIVE


def test_one_seed_is_inconclusive_and_names_a_planned_design():
    (c,) = holm_adjust([compare("xml", "baseline", "map_at_r", "test", {0: 0.61}, {0: 0.60}, family=PRIMARY_FAMILY)])
    assert c.verdict == INCONCLUSIVE and math.isnan(c.equivalence_p)
    assert "plan a rerun with at least 6 seeds" in describe(c, "test MAP@R")


def test_planned_seeds_and_power_follow_the_spread():
    diff, equiv = planned_seeds(sd=0.006, effect=0.005, margin=0.01)
    assert diff is not None and equiv is not None and diff >= 6 and equiv >= 5
    # more spread needs more seeds; a larger effect fewer
    assert planned_seeds(0.012, 0.005, 0.01)[0] > diff and planned_seeds(0.006, 0.01, 0.01)[0] < diff
    assert planned_seeds(0.0, 0.005, 0.01) == (None, None)
    assert seeds_for_a_verdict(0.05, 1) == 6 and seeds_for_a_verdict(0.05, 2) == 7
    # power: the same inputs give the same figure; it grows with the effect and the seeds
    p1 = simulated_power(0.005, 0.006, 6)
    assert p1 == simulated_power(0.005, 0.006, 6)
    assert simulated_power(0.01, 0.006, 6) > p1 and simulated_power(0.005, 0.006, 10) > p1
    assert simulated_power(0.0, 0.006, 8) < 0.06  # the false-positive rate stays near alpha
    # at n = 6 only all-same-sign differences reject: P = 2 * Phi(effect/sd)^6 - ish
    exact = stats.norm.cdf(0.005 / 0.006) ** 6
    assert p1 == pytest.approx(exact, abs=0.03)
