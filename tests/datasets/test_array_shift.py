"""The batch shift of array-store images against a direct per-image definition."""

from __future__ import annotations

import numpy as np

from xbml.datasets.array_shift import shift_draws, shifted


def test_draws_are_a_function_of_the_seed_and_cover_every_shift_about_evenly():
    seeds = np.arange(20_000)
    dy, dx = shift_draws(seeds, 2)
    again = shift_draws(seeds[::-1], 2)
    assert np.array_equal(dy[::-1], again[0]) and np.array_equal(dx[::-1], again[1])
    counts = np.zeros((5, 5))
    np.add.at(counts, (dy + 2, dx + 2), 1)
    # 25 cells of 800 expected each: a chi-square with 24 degrees of freedom, far below its 0.999 point (51.2)
    assert ((counts - 800) ** 2 / 800).sum() < 51.2
    assert shift_draws([2**31 - 2], 1)[0].item() in (-1, 0, 1)  # the sampler's largest seed


def test_each_image_is_moved_by_its_own_shift_with_its_top_left_value_around():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 3, 6, 5), dtype=np.uint8)
    dy, dx = np.array([-2, -1, 0, 1, 2, 2, -2]), np.array([0, 2, -2, 1, -1, 2, -2])
    out = shifted(images, dy, dx, 2)
    assert out.shape == images.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    for b in range(7):
        for y in range(6):
            for x in range(5):
                sy, sx = y + dy[b], x + dx[b]
                inside = 0 <= sy < 6 and 0 <= sx < 5
                expected = images[b, :, sy, sx] if inside else images[b, :, 0, 0]
                assert np.array_equal(out[b, :, y, x], expected), (b, y, x)
