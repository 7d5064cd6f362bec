import numpy as np
import pytest

from xbml.errors import ConfigError
from xbml.samplers import ClassDisjointHalvesSampler


def test_halves_never_share_a_class_and_batches_have_c_by_m_layout():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 30, size=600)
    s = ClassDisjointHalvesSampler(labels, classes_per_batch=8, images_per_class=4, seed=3)
    for i in range(300):
        idx, seeds = s.batch(i)
        y = labels[idx]
        assert len(idx) == len(seeds) == 32
        first, second = set(y[: s.split]), set(y[s.split :])
        assert not first & second
        assert len(first) == len(second) == 4
        # C classes x m images, class-contiguous
        assert all(len(set(y[j : j + 4])) == 1 for j in range(0, 32, 4))


def test_batches_are_a_function_of_seed_and_iteration():
    labels = np.repeat(np.arange(20), 6)
    a = ClassDisjointHalvesSampler(labels, 4, 3, seed=1)
    b = ClassDisjointHalvesSampler(labels, 4, 3, seed=1)
    c = ClassDisjointHalvesSampler(labels, 4, 3, seed=2)
    assert all(np.array_equal(a.batch(i)[0], b.batch(i)[0]) for i in (0, 5, 99))
    # resuming at iteration 99 sees what an uninterrupted run sees
    it = iter(a)
    for _ in range(99):
        next(it)
    assert np.array_equal(next(it)[0], b.batch(99)[0])
    assert not all(np.array_equal(a.batch(i)[0], c.batch(i)[0]) for i in range(5))


def test_small_classes_are_sampled_with_replacement_large_ones_without():
    labels = np.array([0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])
    s = ClassDisjointHalvesSampler(labels, 4, 4, seed=0)
    idx, _ = s.batch(0)
    for j in range(0, 16, 4):
        block = idx[j : j + 4]
        if labels[block[0]] != 0:
            assert len(set(block.tolist())) == 4


def test_odd_or_too_many_classes_are_refused():
    labels = np.repeat(np.arange(5), 4)
    with pytest.raises(ConfigError, match="even"):
        ClassDisjointHalvesSampler(labels, 3, 2, seed=0)
    with pytest.raises(ConfigError, match="has 5 classes"):
        ClassDisjointHalvesSampler(labels, 6, 2, seed=0)
