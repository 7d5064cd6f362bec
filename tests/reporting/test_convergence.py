"""The plateau check of the report: validation MAP@R over the last third of training."""

import pandas as pd
import pytest

from xbml.reporting.convergence import PLATEAU_GAIN, caveat, last_third, seed_gain, sentence


def _log(run, seed, curve):
    return [{"run": run, "seed": seed, "iteration": i, "map_at_r": v} for i, v in curve]


def test_the_gain_runs_from_the_first_validation_at_two_thirds_to_the_last():
    log = pd.DataFrame(_log("a", 0, [(300, 0.5), (600, 0.6), (900, 0.7), (1200, 0.80), (1500, 0.81), (1800, 0.805)]))
    assert seed_gain(log) == (1200, 1800, pytest.approx(0.005))


def test_mean_over_seeds_decides_plateau_and_the_sentence_says_so():
    rows = (_log("flat", 0, [(0, 0.1), (1200, 0.80), (1800, 0.805)]) + _log("flat", 1, [(0, 0.1), (1200, 0.7), (1800, 0.71)])
            + _log("rising", 0, [(0, 0.1), (1200, 0.6), (1800, 0.7)]))
    flat, rising = last_third(pd.DataFrame(rows), ["flat", "rising"])
    assert flat.mean_gain == pytest.approx(0.0075) and flat.plateau
    assert rising.mean_gain == pytest.approx(0.1) and not rising.plateau
    assert rising.mean_gain > PLATEAU_GAIN
    assert "still rising" in sentence(rising) and "a plateau" in sentence(flat)


def test_a_run_with_a_single_validation_is_left_out():
    rows = _log("once", 0, [(1800, 0.8)]) + _log("twice", 0, [(900, 0.7), (1800, 0.8)])
    (only,) = last_third(pd.DataFrame(rows), ["once", "twice"])
    # no validation in the last third but the end: the gain runs from the one before
    assert only.run == "twice" and (only.start, only.end) == (900, 1800) and only.mean_gain == pytest.approx(0.1)


def test_the_caveat_names_each_rising_run_its_gain_and_the_iteration_compared():
    rows = _log("base", 0, [(1200, 0.6), (1800, 0.65)]) + _log("xml", 0, [(1200, 0.6), (1800, 0.62)])
    text = caveat(last_third(pd.DataFrame(rows), ["base", "xml"]))
    assert "base +0.0500, xml +0.0200" in text and "after 1800 iterations" in text
    assert f"criterion {PLATEAU_GAIN}" in text and "train.iterations" in text
