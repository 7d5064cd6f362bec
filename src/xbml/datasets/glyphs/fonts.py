"""The fonts glyphs are drawn from: matplotlib's shipped fonts, which characters each one draws,
and loading them, in this process or in the worker processes that render in parallel."""

from __future__ import annotations

import contextlib
import functools
import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from xbml.errors import DataError

log = logging.getLogger(__name__)

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
DEFAULT_WORKERS = 2


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


# per process, so that spawned workers never parse the cmaps again: set by _init_worker there
_PATHS: tuple[str, ...] | None = None
_FONTS: dict[tuple[int, int], object] = {}  # (font index, pixel size) -> FreeTypeFont


def font_table_paths() -> tuple[str, ...]:
    global _PATHS
    if _PATHS is None:
        _PATHS = font_table().paths
    return _PATHS


def load_font(index: int, px: int):
    """The FreeType font `index` of the table at `px` pixels, loaded once per process."""
    key = (index, px)
    font = _FONTS.get(key)
    if font is None:
        from PIL import ImageFont

        font = _FONTS[key] = ImageFont.truetype(font_table_paths()[index], px)
    return font


def is_bold(index: int) -> bool:
    stem = Path(font_table_paths()[index]).stem
    return "Bol" in stem or stem == "cmb10"


@contextlib.contextmanager
def worker_pool(workers: int, n_tasks: int):
    """Yield an ordered map: the built-in one for 1 worker, else a pool of spawned processes
    that are handed the font paths (they need no font table of their own)."""
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


def _init_worker(paths: tuple[str, ...]) -> None:
    import signal

    global _PATHS
    _PATHS = paths
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it stops the pool)
