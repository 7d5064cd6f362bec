"""`glyphs`: the embedded default dataset, generated offline from the fonts inside matplotlib.

One class per Unicode character. The characters are those that

- at least ``MIN_FONTS`` of the shipped fonts draw (DejaVu Sans/Serif/Mono in 4 styles,
  STIX General in 4 styles, Computer Modern cmr/cmb/cmss/cmti/cmtt/cmmi/cmsy);
- are visible (no whitespace, control, format or combining marks, no Braille cells) and have
  no Unicode decomposition (accented letters, ligatures, compatibility forms), so no class is
  another class plus a mark;
- are not look-alikes of a character kept before them in code point order (Latin A / Greek
  Alpha / Cyrillic A keep only Latin A). Two characters look alike when their lightly blurred
  clean renders, in the regular face of each font family that draws both, are close overall
  (mean relative squared distance < ``LOOKALIKE_DISTANCE``) and nowhere a stroke apart
  (largest 3x3-averaged difference < ``LOOKALIKE_LOCAL``): E / F or O / Q stay apart, l / I
  in sans fonts or light / heavy box-drawing lines do not.

Every image is drawn from its own random generator seeded with ``(seed, code point, index)``
(a random font among those that draw the character, stroke width, rotation, scale, shift,
perspective, blur, contrast and noise), so the set does not depend on generation order or on
the number of worker processes.

``fetch`` writes ``glyphs.npz`` (``images`` uint8 N x H x W, ``labels`` int64 code points,
``fonts`` int64 indices into the font list) and ``glyphs.json`` into the raw folder, atomically;
``prepare`` writes the common manifest with the held-out half of the classes as test split.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xbml.atomic import remove_stale_siblings
from xbml.datasets.registry import DATASETS
from xbml.errors import ConfigError, DataError

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
NPZ_NAME = "glyphs.npz"
JSON_NAME = "glyphs.json"

#: generation parameters a sources block may set, with their defaults
DEFAULTS = {"images_per_class": 40, "image_size": 32, "max_classes": 0, "test_fraction": 0.5}

#: fonts (file stems under matplotlib's fonts/ttf) in the order of the ``fonts`` index
FONT_NAMES = (
    "DejaVuSans",
    "DejaVuSans-Bold",
    "DejaVuSans-Oblique",
    "DejaVuSans-BoldOblique",
    "DejaVuSerif",
    "DejaVuSerif-Bold",
    "DejaVuSerif-Italic",
    "DejaVuSerif-BoldItalic",
    "DejaVuSansMono",
    "DejaVuSansMono-Bold",
    "DejaVuSansMono-Oblique",
    "DejaVuSansMono-BoldOblique",
    "STIXGeneral",
    "STIXGeneralBol",
    "STIXGeneralItalic",
    "STIXGeneralBolIta",
    "cmr10",
    "cmb10",
    "cmss10",
    "cmti10",
    "cmtt10",
    "cmmi10",
    "cmsy10",
)
#: the BaKoMa Computer Modern fonts put their glyphs at TeX code positions; their glyph names
#: (Adobe Glyph List) say which character a glyph is. These names map ambiguously there.
_CM_NAME_OVERRIDES = {"Delta": 0x0394, "Omega": 0x03A9, "mu": 0x03BC}

MIN_FONTS = 6
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

#: geometry of a render, in units of the (oversampled) output side
_FONT_SIZE = 0.75  # font size in pixels
_CAP_CENTRE = 0.365  # height above the baseline (in font sizes) put at the image centre
_MARGIN = 0.1  # ink is shrunk or moved to stay this far inside the border before jitter
_OVERSAMPLE = 2

DEFAULT_WORKERS = 2
_CHUNK = 8  # classes per worker task


# --------------------------------------------------------------------------- fonts


@dataclass(frozen=True)
class FontTable:
    names: tuple[str, ...]
    paths: tuple[str, ...]
    #: per font: code point -> the character code to draw (differs for Computer Modern)
    codes: tuple[dict[int, int], ...]


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=1)
def font_table() -> FontTable:
    from fontTools import agl
    from fontTools.ttLib import TTFont

    names, paths, codes = [], [], []
    for name in FONT_NAMES:
        path = _font_dir() / f"{name}.ttf"
        if not path.exists():
            log.warning("font %s is not shipped with this matplotlib; generating without it", path)
            continue
        font = TTFont(path, lazy=True)
        cmap = font.getBestCmap() or {}
        if name.startswith("cm"):
            mapping = {}
            for code, glyph in sorted(cmap.items()):
                cp = _CM_NAME_OVERRIDES.get(glyph)
                if cp is None:
                    text = agl.toUnicode(glyph)
                    if len(text) != 1 or unicodedata.category(text) == "Co":  # unknown or private use
                        continue
                    cp = ord(text)
                mapping.setdefault(cp, code)
        else:
            mapping = {cp: cp for cp in cmap}
        font.close()
        names.append(name)
        paths.append(str(path))
        codes.append(mapping)
    if not names:
        raise DataError(f"no fonts found under {_font_dir()}; is matplotlib installed completely?")
    return FontTable(tuple(names), tuple(paths), tuple(codes))


def _visible(cp: int) -> bool:
    ch = chr(cp)
    cat = unicodedata.category(ch)
    if cat[0] in "CZ" or cat[0] == "M":  # control, format, unassigned, private, separators, marks
        return False
    if unicodedata.decomposition(ch):  # accented letters, ligatures, compatibility forms
        return False
    if 0x2800 <= cp <= 0x28FF:  # Braille cells: dot patterns, the same in every font
        return False
    return True


def candidate_chars(min_fonts: int = MIN_FONTS) -> dict[int, tuple[int, ...]]:
    """Visible, undecomposable code points drawn by >= min_fonts fonts -> those font indices."""
    table = font_table()
    fonts: dict[int, list[int]] = {}
    for i, mapping in enumerate(table.codes):
        for cp in mapping:
            fonts.setdefault(cp, []).append(i)
    return {cp: tuple(f) for cp, f in sorted(fonts.items()) if len(f) >= min_fonts and _visible(cp)}


# --------------------------------------------------------------------------- rendering

_FONTS: dict[tuple[int, int], object] = {}  # per process: (font index, pixel size) -> FreeTypeFont


def _font(index: int, px: int):
    key = (index, px)
    font = _FONTS.get(key)
    if font is None:
        from PIL import ImageFont

        font = _FONTS[key] = ImageFont.truetype(font_table_paths()[index], px)
    return font


_PATHS: tuple[str, ...] | None = None


def font_table_paths() -> tuple[str, ...]:
    global _PATHS
    if _PATHS is None:
        _PATHS = font_table().paths
    return _PATHS


def _is_bold(index: int) -> bool:
    stem = Path(font_table_paths()[index]).stem
    return "Bol" in stem or stem == "cmb10"


def _raster(font, code: int, stroke: int):
    """The glyph drawn in white on black (lines thickened by `stroke` pixels on each side), its
    ink box and its baseline row, or None if it draws nothing."""
    from PIL import Image, ImageDraw

    ch = chr(code)
    x0, y0, x1, y1 = font.getbbox(ch, anchor="ls", stroke_width=stroke)
    pad = 2 + stroke
    im = Image.new("L", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), 0)
    ImageDraw.Draw(im).text(
        (pad - x0, pad - y0), ch, font=font, fill=255, anchor="ls", stroke_width=stroke, stroke_fill=255
    )
    box = im.getbbox()
    if box is None:
        return None
    return im, box, pad - y0


def _placement(box, baseline: float, px: int, side: int) -> tuple[float, float, float]:
    """(ref_x, ref_y, scale): the glyph point put at the image centre and the fit-in scale.

    The ink is centred horizontally; vertically the baseline stays at a fixed height (so `o`
    and `O`, `-` and `_` stay apart) unless the ink would leave the box, where it is moved in
    (or shrunk when too large).
    """
    bx0, by0, bx1, by1 = box
    rx = (bx0 + bx1) / 2
    ry = baseline - _CAP_CENTRE * px
    half = side * (0.5 - _MARGIN)
    scale = min(1.0, 2 * half / max(bx1 - bx0, 1), 2 * half / max(by1 - by0, 1))
    top, bottom = (by0 - ry) * scale, (by1 - ry) * scale
    if bottom > half:
        ry += (bottom - half) / scale
    elif top < -half:
        ry -= (-half - top) / scale
    return rx, ry, scale


def _square_to_quad(quad) -> np.ndarray:
    """3x3 homography taking the unit square's corners (0,0), (1,0), (1,1), (0,1) to `quad`."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = quad
    sx, sy = x0 - x1 + x2 - x3, y0 - y1 + y2 - y3
    dx1, dx2, dy1, dy2 = x1 - x2, x3 - x2, y1 - y2, y3 - y2
    den = dx1 * dy2 - dx2 * dy1
    g = (sx * dy2 - dx2 * sy) / den
    h = (dx1 * sy - sx * dy1) / den
    return np.array(
        [
            [x1 - x0 + g * x1, x3 - x0 + h * x3, x0],
            [y1 - y0 + g * y1, y3 - y0 + h * y3, y0],
            [g, h, 1.0],
        ]
    )


_STROKE_P = (0.5, 0.85)  # cumulative probabilities of stroke widths 0 and 1 (else 2), in output half-pixels


def render_image(cp: int, fonts: tuple[tuple[int, int], ...], index: int, seed: int, size: int, cache=None):
    """One augmented image of code point `cp`: (uint8 size x size array, font index).

    `fonts` lists (font index, character code) of the fonts that draw it. Everything random
    comes from a generator seeded with (seed, cp, index) alone; `cache` (a dict kept for one
    code point) only saves drawing the same glyph twice.
    """
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(np.random.SeedSequence([seed, cp, index]))
    u = rng.random(19)
    noise = rng.standard_normal((size, size))
    font_index, code = fonts[min(int(u[0] * len(fonts)), len(fonts) - 1)]
    stroke = 0 if u[1] < _STROKE_P[0] else 1 if u[1] < _STROKE_P[1] else 2
    if stroke == 2 and _is_bold(font_index):  # bold + the widest stroke fills complex glyphs in
        stroke = 1
    stroke = stroke * _OVERSAMPLE // 2
    angle = np.deg2rad(-15 + 30 * u[2])
    zoom = 0.8 + 0.32 * u[3]
    shift = (-0.07 + 0.14 * u[4:6]) * size
    unit = np.array([(0, 0), (1, 0), (1, 1), (0, 1)], dtype=float)
    quad = (unit + (-0.06 + 0.12 * u[6:14].reshape(4, 2))) * size  # jittered image corners
    blur = float(0.9 * u[15]) if u[14] < 0.6 else 0.0
    ink = 0.65 + 0.35 * u[16]
    background = 0.2 * u[17]
    noise_sd = 0.07 * u[18]

    side = size * _OVERSAMPLE
    px = int(round(_FONT_SIZE * side))
    key = (font_index, code, stroke)
    placed = cache.get(key) if cache is not None else None
    if placed is None:
        drawn = _raster(_font(font_index, px), code, stroke)
        if drawn is None:  # a blank glyph: not in a selected font, but never crash on it
            placed = (None, 0.0, 0.0, 1.0)
        else:
            im, box, baseline = drawn
            placed = (im, *_placement(box, baseline, px, side))
        if cache is not None:
            cache[key] = placed
    im, rx, ry, fit = placed
    if im is None:
        glyph = np.zeros((size, size), dtype=np.float32)
    else:
        s = fit * zoom
        c, sn = np.cos(angle) / s, np.sin(angle) / s
        centre = (size / 2 + shift) * _OVERSAMPLE
        # output pixel -> glyph raster: undo the perspective jitter, go to raster scale, then
        # undo the similarity transform that puts (rx, ry) at the (shifted) centre
        inv_affine = np.array([[c, sn, 0.0], [-sn, c, 0.0], [0.0, 0.0, 1.0]])
        inv_affine[:2, 2] = np.array([rx, ry]) - inv_affine[:2, :2] @ centre
        to_square = np.linalg.inv(_square_to_quad(quad.tolist()))  # output pixel -> unit square
        inv = inv_affine @ np.diag([side, side, 1.0]) @ to_square
        inv /= inv[2, 2]
        coeffs = tuple(inv.ravel()[:8])
        out = im.transform((size, size), Image.PERSPECTIVE, coeffs, Image.BILINEAR, fillcolor=0)
        if blur > 0.05:
            out = out.filter(ImageFilter.GaussianBlur(blur))
        glyph = np.asarray(out, dtype=np.float32) / 255.0
    img = background + (ink - background) * glyph + noise_sd * noise
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8), font_index


def clean_render(cp: int, font_index: int, size: int = 32, stroke: int = 0) -> np.ndarray | None:
    """The canonical (unaugmented) render of `cp` in one font, uint8 size x size, or None if blank.

    Same placement as the augmented renders, at the output resolution, rounded to whole pixels;
    `stroke` thickens every line by that many pixels on each side.
    """
    return _clean(font_index, font_table().codes[font_index][cp], size, stroke)


def _clean(font_index: int, code: int, size: int, stroke: int = 0) -> np.ndarray | None:
    from PIL import Image

    px = int(round(_FONT_SIZE * size))
    drawn = _raster(_font(font_index, px), code, stroke)
    if drawn is None:
        return None
    im, box, baseline = drawn
    rx, ry, fit = _placement(box, baseline, px, size)
    if fit < 1:
        im = im.resize((max(1, round(im.width * fit)), max(1, round(im.height * fit))), Image.BILINEAR)
        rx, ry = rx * fit, ry * fit
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(im, (int(round(size / 2 - rx)), int(round(size / 2 - ry))))
    return np.asarray(canvas)


# --------------------------------------------------------------------------- class selection


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
            img = _clean(f, code, 32, stroke=1)
            out.append((cp, f, img is not None, img))
        else:
            _, top, _, bottom = _font(f, 16).getbbox(chr(code))  # no outline: zero height
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
    with _pool(workers, len(tasks)) as run:
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
    """The usable characters (see the module docstring); `workers` only changes the speed."""
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


# --------------------------------------------------------------------------- generation


@contextlib.contextmanager
def _pool(workers: int, n_tasks: int):
    """Yield an ordered map: the built-in one for 1 worker, else a pool of spawned processes."""
    workers = max(1, min(int(workers), n_tasks))
    if workers == 1:
        yield map
        return
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(
        workers, initializer=_init_worker, initargs=(font_table_paths(),)
    )
    try:
        yield pool.imap
    finally:
        pool.terminate()
        pool.join()


def _render_classes(task) -> tuple[np.ndarray, np.ndarray]:
    items, images_per_class, size, seed = task
    images = np.empty((len(items) * images_per_class, size, size), dtype=np.uint8)
    fonts = np.empty(len(items) * images_per_class, dtype=np.int64)
    k = 0
    for cp, font_codes in items:
        cache: dict = {}
        for index in range(images_per_class):
            images[k], fonts[k] = render_image(cp, font_codes, index, seed, size, cache)
            k += 1
    return images, fonts


def _init_worker(paths: tuple[str, ...]) -> None:
    import signal

    global _PATHS
    _PATHS = paths
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it stops the pool)


def generate(
    classes,
    fonts: dict,
    images_per_class: int,
    image_size: int,
    seed: int,
    workers: int = DEFAULT_WORKERS,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, labels, fonts) for `classes` (code points) in the given order.

    `fonts` maps a code point to its ((font index, character code), ...). The result does not
    depend on `workers`: every image has its own seed.
    """
    from tqdm import tqdm

    classes = [int(c) for c in classes]
    tasks = [
        ([(cp, fonts[cp]) for cp in classes[i : i + _CHUNK]], images_per_class, image_size, seed)
        for i in range(0, len(classes), _CHUNK)
    ]
    n = len(classes) * images_per_class
    images = np.empty((n, image_size, image_size), dtype=np.uint8)
    font_index = np.empty(n, dtype=np.int64)
    labels = np.repeat(np.asarray(classes, dtype=np.int64), images_per_class)
    bar = tqdm(total=len(classes), desc="glyphs", unit="class", disable=not progress)
    try:
        with _pool(workers, len(tasks)) as run:
            k = 0
            for task, (imgs, fidx) in zip(tasks, run(_render_classes, tasks)):
                images[k : k + len(imgs)] = imgs
                font_index[k : k + len(imgs)] = fidx
                k += len(imgs)
                bar.update(len(task[0]))
    finally:
        bar.close()
    return images, labels, font_index


def arrays_sha256(images: np.ndarray, labels: np.ndarray, fonts: np.ndarray) -> str:
    h = hashlib.sha256()
    for name, arr in (("images", images), ("labels", labels), ("fonts", fonts)):
        arr = np.ascontiguousarray(arr)
        h.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed with fixed zip timestamps: same arrays -> same bytes (DVC-friendly)."""
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            # level 1: noisy images hardly compress better at 6, and it is twice as fast
            zf.writestr(info, buf.getbuffer(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)


# --------------------------------------------------------------------------- parameters


def resolve_params(sources: dict | None, seed: int) -> dict:
    """Generation parameters from a sources block; unknown or invalid keys are ConfigErrors."""
    sources = dict(sources or {})
    unknown = sorted(set(sources) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown glyphs source key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(sorted(DEFAULTS))}"
        )
    params = {**DEFAULTS, **sources}
    for key in ("images_per_class", "image_size", "max_classes"):
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"glyphs source key {key!r} must be an integer, got {value!r}")
    if params["images_per_class"] < 1:
        raise ConfigError(f"glyphs images_per_class must be >= 1, got {params['images_per_class']}")
    if params["image_size"] < 8:
        raise ConfigError(f"glyphs image_size must be >= 8, got {params['image_size']}")
    if params["max_classes"] < 0:
        raise ConfigError(f"glyphs max_classes must be >= 0 (0 = all), got {params['max_classes']}")
    tf = params["test_fraction"]
    if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 < tf < 1:
        raise ConfigError(f"glyphs test_fraction must be a number in (0, 1), got {tf!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"glyphs seed must be a non-negative integer, got {seed!r}")
    params["test_fraction"] = float(tf)
    params["seed"] = int(seed)
    params["min_fonts"] = MIN_FONTS
    params["lookalike"] = [LOOKALIKE_DISTANCE, LOOKALIKE_LOCAL]
    params["generator_version"] = GENERATOR_VERSION
    return params


def _complete(raw_dir: Path, params: dict, font_names: list[str]) -> bool:
    """True when raw_dir holds an intact set generated with exactly these parameters."""
    meta_path, npz_path = raw_dir / JSON_NAME, raw_dir / NPZ_NAME
    if not (meta_path.is_file() and npz_path.is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    if meta.get("params") != params or meta.get("fonts") != font_names:
        return False
    if meta.get("file_sha256") != file_sha256(npz_path):
        log.warning("%s does not match the checksum in %s; generating it again", npz_path, meta_path)
        return False
    return True


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder tmp to target, replacing a previous version of it."""
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _remove_leftovers(target: Path) -> None:
    """Temporary folders of `target` that a killed fetch or prepare left beside it (see _replace_dir)."""
    for infix in (".tmp-", ".old-"):
        for stale in remove_stale_siblings(target, infix):
            log.info("removed %s, left by an interrupted run", stale)


def _check_replaceable(target: Path, marker: str, what: str) -> None:
    """Refuse to replace a folder that is not ours (it might hold a user's files)."""
    if not target.exists():
        return
    if not target.is_dir() or (any(target.iterdir()) and not (target / marker).exists()):
        raise DataError(
            f"{target} exists and is not a {what} (no {marker}); choose another folder or remove it"
        )


# --------------------------------------------------------------------------- dataset hooks


@DATASETS.register("glyphs")
class Glyphs:
    """Embedded dataset: characters rendered from matplotlib's fonts, generated on `fetch`."""

    @staticmethod
    def fetch(raw_dir, sources: dict, seed: int = 0, progress: bool = True) -> None:
        raw_dir = Path(raw_dir)
        params = resolve_params(sources, seed)
        _remove_leftovers(raw_dir)
        table = font_table()
        if _complete(raw_dir, params, list(table.names)):
            log.info("%s already holds the glyphs set for these parameters; nothing to do", raw_dir)
            return
        _check_replaceable(raw_dir, JSON_NAME, "glyphs raw folder")
        raw_dir.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        selection = select_classes()
        classes = subset_classes(selection.classes, params["max_classes"])
        tmp = Path(tempfile.mkdtemp(prefix=f".{raw_dir.name}.tmp-", dir=raw_dir.parent))
        try:
            images, labels, fonts = generate(
                classes,
                selection.fonts,
                params["images_per_class"],
                params["image_size"],
                params["seed"],
                workers=min(DEFAULT_WORKERS, len(os.sched_getaffinity(0)) or 1),
                progress=progress,
            )
            write_npz(tmp / NPZ_NAME, {"images": images, "labels": labels, "fonts": fonts})
            meta = _metadata(params, table, selection, classes, images, labels, fonts)
            meta["file_sha256"] = file_sha256(tmp / NPZ_NAME)
            (tmp / JSON_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
            for p in tmp.iterdir():
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
            os.chmod(tmp, 0o755)
            _replace_dir(tmp, raw_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        log.info(
            "generated %d images of %d glyph classes into %s in %.1f s",
            len(labels),
            len(classes),
            raw_dir,
            time.perf_counter() - start,
        )

    @staticmethod
    def prepare(raw_dir, out_dir, val_fraction: float = 0.2, seed: int = 0) -> None:
        from xbml.datasets.manifest import Manifest, split_classes, write_manifest

        raw_dir, out_dir = Path(raw_dir), Path(out_dir)
        meta_path, npz_path = raw_dir / JSON_NAME, raw_dir / NPZ_NAME
        if not (meta_path.is_file() and npz_path.is_file()):
            raise DataError(
                f"{raw_dir} holds no complete glyphs set ({JSON_NAME} + {NPZ_NAME}); "
                f"run `python -m xbml fetch glyphs --out {raw_dir}` first"
            )
        if not 0 <= val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
        meta = json.loads(meta_path.read_text())
        if meta.get("file_sha256") != file_sha256(npz_path):
            raise DataError(
                f"{npz_path} does not match the checksum in {meta_path}; "
                f"remove {raw_dir} and run `python -m xbml fetch glyphs --out {raw_dir}` again"
            )
        with np.load(npz_path, allow_pickle=False) as z:
            labels = z["labels"].astype(np.int64)
            image_size = int(z["images"].shape[-1])
        test = held_out_classes(np.unique(labels), meta["params"]["test_fraction"])
        split, fold = split_classes(labels, test, val_fraction, seed)
        info = {
            "name": "glyphs",
            "array_store": os.path.relpath(npz_path.resolve(), out_dir.resolve()),
            "channels": 1,
            "image_size": image_size,
            "protocol": "self",
            "num_classes": int(len(np.unique(labels))),
            "val_fraction": float(val_fraction),
            "split_seed": int(seed),
            "source": {
                "generation_seed": meta["params"]["seed"],
                "arrays_sha256": meta["arrays_sha256"],
                "file_sha256": meta["file_sha256"],
            },
        }
        m = Manifest(
            images=[f"#{i}" for i in range(len(labels))],
            labels=labels,
            splits=split,
            roles=np.full(len(labels), "both", dtype=object),
            folds=fold,
            info=info,
        )
        _check_replaceable(out_dir, "dataset.json", "prepared dataset folder")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(out_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
        try:
            write_manifest(tmp, m)
            os.chmod(tmp, 0o755)
            _replace_dir(tmp, out_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        counts = {s: int(len(np.unique(labels[split == s]))) for s in ("train", "val", "test")}
        log.info("prepared glyphs into %s: classes %s", out_dir, counts)


def _metadata(params, table: FontTable, selection: Selection, classes, images, labels, fonts) -> dict:
    import PIL
    from PIL import features

    import matplotlib

    return {
        "name": "glyphs",
        "params": params,
        "fonts": list(table.names),
        "num_classes": len(classes),
        "num_images": int(len(labels)),
        "image_shape": list(images.shape[1:]),
        "code_points": [int(c) for c in classes],
        "usable_classes": len(selection.classes),
        "arrays_sha256": arrays_sha256(images, labels, fonts),
        "file": NPZ_NAME,
        # rendering depends on these: same versions + same params -> same bytes
        "environment": {
            "matplotlib": matplotlib.__version__,
            "pillow": PIL.__version__,
            "freetype": features.version("freetype2"),
            "numpy": np.__version__,
        },
    }
