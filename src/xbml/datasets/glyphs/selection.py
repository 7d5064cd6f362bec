"""Which characters are classes: those enough fonts really draw, minus look-alikes of a
character kept before them in code point order, and the fixed subsets of them (``max_classes``,
the held-out test classes) that do not depend on the generation seed.

Two characters look alike when their lightly blurred clean renders, in the regular face of each
font family that draws both, are close overall (mean relative squared distance <
``LOOKALIKE_DISTANCE``) and nowhere a stroke apart (largest 3x3-averaged difference <
``LOOKALIKE_LOCAL``): E / F or O / Q stay apart, l / I in sans fonts or light / heavy
box-drawing lines do not.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from xbml.datasets.glyphs.fonts import DEFAULT_WORKERS, MIN_FONTS, candidate_chars, font_table, load_font, worker_pool
from xbml.datasets.glyphs.render import clean_code_render

#: the look-alike test compares clean renders in the regular face of each font family
COMPARE_FONTS = ("DejaVuSans", "DejaVuSerif", "DejaVuSansMono", "STIXGeneral", "cmr10")
#: look-alikes: mean relative squared distance under this ...
LOOKALIKE_DISTANCE = 0.15
#: ... and no 3x3 patch that differs by this much ink (a stroke in one glyph only: ~0.5-1)
LOOKALIKE_LOCAL = 0.42
#: fixed seeds of the protocol (which classes a max_classes subset keeps, which are held out):
#: they do not depend on the generation seed, so every seed uses the same classes
_SUBSET_SEED = 20240611
_TEST_SEED = 20240612

_SIGNATURE_SCALE = 255 * 16  # full ink in a signature


def signatures(renders: np.ndarray) -> np.ndarray:
    """Lightly blurred clean renders as N x (H*W) rows, tolerant to one-pixel differences in
    stroke weight and position. The values are integers (full ink: _SIGNATURE_SCALE) stored as
    float32, so float64 sums of their products are exact whatever the BLAS: no borderline pair
    flips between machines."""
    x = renders.astype(np.float32)
    p = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    x = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]  # [1, 2, 1] blur along rows
    p = np.pad(x, ((0, 0), (0, 0), (1, 1)))
    x = p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]  # and along columns
    return x.reshape(len(x), -1)


@dataclass(frozen=True)
class Selection:
    classes: tuple[int, ...]  # usable code points, sorted
    fonts: dict  # code point -> ((font index, character code), ...)
    dropped_lookalikes: dict  # dropped code point -> the kept code point it looks like


def _survey_task(task) -> list[tuple[int, int, bool, np.ndarray | None]]:
    """(cp, font, draws ink?, clean render or None) for (cp, font, code, want the render)."""
    out = []
    for cp, f, code, want in task:
        if want:
            # thickened by a pixel: hairlines (STIX's thin strokes) count as much as stems
            img = clean_code_render(f, code, 32, stroke=1)
            out.append((cp, f, img is not None, img))
        else:
            _, top, _, bottom = load_font(f, 16).getbbox(chr(code))  # no outline: zero height
            out.append((cp, f, bottom > top, None))
    return out


@functools.lru_cache(maxsize=2)
def survey(min_fonts: int = MIN_FONTS, workers: int = DEFAULT_WORKERS):
    """(inked, sigs) for the visible characters that >= min_fonts fonts map.

    inked: code point -> the fonts that really draw ink for it (>= min_fonts of them);
    sigs: (code point, font) -> signature, for the fonts of COMPARE_FONTS.
    """
    table = font_table()
    compare = {i for i, name in enumerate(table.names) if name in COMPARE_FONTS}
    cands = {cp: f for cp, f in candidate_chars(1).items() if len(f) >= min_fonts}
    jobs = [(cp, f, table.codes[f][cp], f in compare) for cp in sorted(cands) for f in cands[cp]]
    tasks = [jobs[i : i + 1024] for i in range(0, len(jobs), 1024)]
    ink: dict[int, list[int]] = {cp: [] for cp in cands}
    keys, renders = [], []
    with worker_pool(workers, len(tasks)) as run:
        for chunk in run(_survey_task, tasks):
            for cp, f, has_ink, img in chunk:
                if has_ink:
                    ink[cp].append(f)
                if img is not None:
                    keys.append((cp, f))
                    renders.append(img)
    inked = {cp: tuple(fonts) for cp, fonts in ink.items() if len(fonts) >= min_fonts}
    sigs = dict(zip(keys, signatures(np.stack(renders))))
    return inked, sigs


def lookalike_distances(
    cps: list[int], sigs: dict[tuple[int, int], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(mean distance, number of shared fonts) for every pair of `cps`.

    Distance in one font: ||a - b||^2 / (||a||^2 + ||b||^2) of the signatures (0 when
    identical, 1 when the inks do not overlap), averaged over the fonts that draw both.
    """
    n = len(cps)
    total = np.zeros((n, n), dtype=np.float64)
    count = np.zeros((n, n), dtype=np.int32)
    for f in sorted({f for _, f in sigs}):
        rows = [i for i, cp in enumerate(cps) if (cp, f) in sigs]
        if len(rows) < 2:
            continue
        sig = np.stack([sigs[cps[i], f] for i in rows]).astype(np.float64)
        sq = (sig**2).sum(1)
        norm = sq[:, None] + sq[None, :]
        dist = np.clip((norm - 2 * sig @ sig.T) / np.maximum(norm, 1e-12), 0.0, 1.0)
        idx = np.asarray(rows)
        total[np.ix_(idx, idx)] += dist
        count[np.ix_(idx, idx)] += 1
    mean = np.where(count > 0, total / np.maximum(count, 1), np.inf)
    return mean, count


def local_differences(pairs, sigs: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """For each (cp_a, cp_b): the largest 3x3-averaged |a - b| of their signatures (0: the same
    glyph; ~1: a whole stroke present in one only), averaged over the fonts that draw both."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    total = np.zeros(len(pairs))
    count = np.zeros(len(pairs))
    cps = np.unique(pairs)
    for f in sorted({f for _, f in sigs}):
        have = np.array([(int(cp), f) in sigs for cp in cps], dtype=bool)
        if not have.any():
            continue
        mat = np.stack([sigs[int(cp), f] for cp in cps[have]])
        side = int(round(np.sqrt(mat.shape[1])))
        row = np.full(len(cps), -1)
        row[have] = np.arange(int(have.sum()))
        ra, rb = row[np.searchsorted(cps, pairs[:, 0])], row[np.searchsorted(cps, pairs[:, 1])]
        idx = np.flatnonzero((ra >= 0) & (rb >= 0))
        for start in range(0, len(idx), 4096):  # in chunks: bounded memory
            k = idx[start : start + 4096]
            d = np.abs(mat[ra[k]] - mat[rb[k]]).reshape(len(k), side, side)
            p = np.pad(d, ((0, 0), (1, 1), (0, 0)))
            d = p[:, :-2] + p[:, 1:-1] + p[:, 2:]  # 3x3 box sum: rows ...
            p = np.pad(d, ((0, 0), (0, 0), (1, 1)))
            d = p[:, :, :-2] + p[:, :, 1:-1] + p[:, :, 2:]  # ... then columns
            total[k] += d.max(axis=(1, 2)) / (9 * _SIGNATURE_SCALE)
            count[k] += 1
    return np.where(count > 0, total / np.maximum(count, 1), np.inf)


def lookalike_pairs(cps, sigs: dict[tuple[int, int], np.ndarray]) -> list[tuple[int, int]]:
    """The pairs (cp_a < cp_b) of `cps` that look alike: similar overall (mean distance under
    LOOKALIKE_DISTANCE) and nowhere a stroke apart (local difference under LOOKALIKE_LOCAL)."""
    cps = sorted(int(c) for c in cps)
    mean, _ = lookalike_distances(cps, sigs)
    ii, jj = np.nonzero(np.triu(mean < LOOKALIKE_DISTANCE, 1))
    pairs = [(cps[i], cps[j]) for i, j in zip(ii, jj)]
    if not pairs:
        return []
    local = local_differences(pairs, sigs)
    return [pair for pair, d in zip(pairs, local) if d < LOOKALIKE_LOCAL]


@functools.lru_cache(maxsize=4)
def select_classes(min_fonts: int = MIN_FONTS, workers: int = DEFAULT_WORKERS) -> Selection:
    """The usable characters: see the module docstring; `workers` only changes the speed."""
    table = font_table()
    inked, sigs = survey(min_fonts, workers)
    cps = sorted(inked)
    alike: dict[int, list[int]] = {}
    for a, b in lookalike_pairs(cps, sigs):
        alike.setdefault(a, []).append(b)
        alike.setdefault(b, []).append(a)
    kept: set[int] = set()
    dropped: dict[int, int] = {}
    for cp in cps:  # greedy in code point order: keep unless it looks like a kept one
        hits = sorted(c for c in alike.get(cp, ()) if c in kept)
        if hits:
            dropped[cp] = hits[0]
        else:
            kept.add(cp)
    classes = tuple(sorted(kept))
    font_codes = {cp: tuple((f, table.codes[f][cp]) for f in inked[cp]) for cp in classes}
    return Selection(classes, font_codes, dropped)


def subset_classes(classes, max_classes: int) -> list[int]:
    """The first `max_classes` of a fixed shuffle (spread over all scripts), sorted; all if 0."""
    classes = sorted(int(c) for c in classes)
    if not max_classes or max_classes >= len(classes):
        return classes
    order = np.random.default_rng(_SUBSET_SEED).permutation(len(classes))[:max_classes]
    return sorted(classes[i] for i in order)


def held_out_classes(classes, test_fraction: float) -> np.ndarray:
    """The protocol's held-out classes: a fixed shuffle of the sorted classes, first fraction."""
    classes = np.sort(np.asarray(classes, dtype=np.int64))
    n_test = int(round(len(classes) * test_fraction))
    if len(classes) >= 2:  # both sides of the protocol need a class
        n_test = min(max(n_test, 1), len(classes) - 1)
    order = np.random.default_rng(_TEST_SEED).permutation(len(classes))
    return np.sort(classes[order[:n_test]])
