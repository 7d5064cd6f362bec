"""Paired statistics of the report on inputs whose answers are known."""

import math

import numpy as np
import pytest
from scipy import stats

from xbml.reporting.statistics import (
    bootstrap_ci,
    compare,
    describe,
    format_p,
    paired_differences,
    paired_t_test,
)


def test_constant_differences_give_a_point_interval_and_p_zero():
    base = {0: 0.50, 1: 0.55, 2: 0.60, 3: 0.52, 4: 0.58}
    method = {s: v + 0.01 for s, v in base.items()}
    c = compare("xml", "baseline", "map_at_r", "test", method, base)
    assert c.mean == pytest.approx(0.01)
    assert (c.ci_low, c.ci_high) == pytest.approx((0.01, 0.01))
    assert c.p_value == 0.0
    assert c.significant and c.direction == "better"
    text = describe(c, "MAP@R")
    assert text.startswith("xml improves MAP@R by +0.010 [+0.010, +0.010] over 5 seeds")
    assert "paired t-test p < 0.001" in text


def test_bootstrap_is_deterministic_contains_the_mean_and_matches_a_direct_resampling():
    d = np.array([0.012, -0.004, 0.020, 0.007, 0.015, 0.001])
    lo, hi = bootstrap_ci(d, 0.95, 5000)
    assert (lo, hi) == bootstrap_ci(d, 0.95, 5000)  # same report every time
    assert lo < d.mean() < hi
    assert d.min() <= lo and hi <= d.max()
    # the same percentile bootstrap written out independently
    rng = np.random.default_rng(123)
    means = np.array([rng.choice(d, size=len(d), replace=True).mean() for _ in range(20000)])
    ref = np.quantile(means, [0.025, 0.975])
    assert lo == pytest.approx(ref[0], abs=0.0015)
    assert hi == pytest.approx(ref[1], abs=0.0015)
    # a wider confidence level gives a wider interval; another RNG seed a (slightly) different one
    lo99, hi99 = bootstrap_ci(d, 0.99, 5000)
    assert lo99 <= lo and hi99 >= hi
    assert bootstrap_ci(d, 0.95, 5000, seed=1) != (lo, hi)


def test_paired_t_test_equals_the_textbook_formula_and_scipy():
    d = np.array([0.03, 0.01, 0.02, -0.005, 0.025])
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    p = 2 * stats.t.sf(abs(t), df=len(d) - 1)
    assert paired_t_test(d) == pytest.approx(p)
    a = np.array([0.5, 0.6, 0.55, 0.58, 0.52])
    assert paired_t_test(a + d - a) == pytest.approx(stats.ttest_rel(a + d, a).pvalue)


def test_interval_covering_zero_is_not_significant():
    base = {0: 0.50, 1: 0.52, 2: 0.51}
    method = {0: 0.51, 1: 0.50, 2: 0.515}
    c = compare("xml", "baseline", "map_at_r", "test", method, base, samples=2000)
    assert c.ci_low < 0 < c.ci_high
    assert not c.significant and c.direction == "no significant change"
    text = describe(c, "MAP@R")
    assert text.startswith("xml does not significantly change MAP@R compared with baseline")
    assert "the interval covers 0" in text


def test_worse_direction_and_pairing_by_seed():
    base = {0: 0.50, 1: 0.60, 2: 0.70, 7: 0.9}
    method = {2: 0.68, 0: 0.48, 1: 0.58, 5: 0.1}  # seeds 5 and 7 have no partner
    seeds, d = paired_differences(method, base)
    assert seeds == (0, 1, 2)
    assert d == pytest.approx([-0.02, -0.02, -0.02])
    c = compare("xml", "baseline", "map_at_r", "test", method, base)
    assert c.direction == "worse"
    assert describe(c, "MAP@R").startswith("xml worsens MAP@R by -0.020")


def test_one_seed_has_no_test_and_no_seeds_no_comparison():
    c = compare("xml", "baseline", "map_at_r", "test", {0: 0.6}, {0: 0.5})
    assert c.n == 1 and math.isnan(c.p_value) and not c.significant
    assert "one paired run cannot show" in describe(c, "MAP@R")
    assert compare("xml", "baseline", "map_at_r", "test", {1: 0.6}, {0: 0.5}) is None
    assert format_p(float("nan")) == "n/a"


def test_identical_runs_are_not_significant():
    base = {0: 0.5, 1: 0.6, 2: 0.7}
    c = compare("xml0", "baseline", "map_at_r", "test", dict(base), base)
    assert (c.mean, c.ci_low, c.ci_high, c.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not c.significant


def test_bad_input_is_rejected():
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, 0.2], confidence=1.5)
