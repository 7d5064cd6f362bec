"""Drawing one glyph image: the clean, centred render of a character in one font, and the
augmented render (font, stroke, rotation, scale, shift, perspective, blur, contrast, noise) whose
randomness comes from ``(seed, code point, index)`` alone."""

from __future__ import annotations

import numpy as np

from xbml.datasets.glyphs.fonts import font_table, is_bold, load_font

#: geometry of a render, in units of the (oversampled) output side
_FONT_SIZE = 0.75  # font size in pixels
_CAP_CENTRE = 0.365  # height above the baseline (in font sizes) put at the image centre
_MARGIN = 0.1  # ink is shrunk or moved to stay this far inside the border before jitter
_OVERSAMPLE = 2

_STROKE_P = (0.5, 0.85)  # cumulative probabilities of stroke widths 0 and 1 (else 2), in output half-pixels


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
    if stroke == 2 and is_bold(font_index):  # bold + the widest stroke fills complex glyphs in
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
        drawn = _raster(load_font(font_index, px), code, stroke)
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
    return clean_code_render(font_index, font_table().codes[font_index][cp], size, stroke)


def clean_code_render(font_index: int, code: int, size: int, stroke: int = 0) -> np.ndarray | None:
    """:func:`clean_render` of a character code of the font itself (which differs from the code
    point for Computer Modern): what a worker draws without the font table."""
    from PIL import Image

    px = int(round(_FONT_SIZE * size))
    drawn = _raster(load_font(font_index, px), code, stroke)
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
