"""`select_classes` remembered on disk. The survey behind it renders every candidate character in
every font (about 5 CPU-s, more than generating a small glyph set), yet its answer depends only on
the font files, the code that renders and compares them, and the library versions that rasterise
them; so a fetch after the first reads it back.

The file is named by a hash of all of those (`selection_key`), so another font, another
renderer or an edited selection rule is a new file, never a stale answer. A file that cannot be
read, or that does not hold a well-formed selection, is recomputed and replaced; a cache folder
that cannot be written only costs the survey again. The folder is $XBML_CACHE_DIR, else
$XDG_CACHE_HOME/xbml, else ~/.cache/xbml; deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from xbml.atomic import write_json
from xbml.datasets.glyphs.fonts import MIN_FONTS, font_table
from xbml.datasets.glyphs.selection import Selection, select_classes

log = logging.getLogger(__name__)

#: the modules whose code decides the selection: which fonts, how a glyph is drawn, what is kept
_RULE_MODULES = ("fonts.py", "render.py", "selection.py")


def cache_dir() -> Path:
    if os.environ.get("XBML_CACHE_DIR"):
        return Path(os.environ["XBML_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xbml"


def selection_key(min_fonts: int = MIN_FONTS) -> str:
    import numpy
    import PIL
    from PIL import features

    h = hashlib.sha256()
    for part in (f"min_fonts={min_fonts}", f"pillow={PIL.__version__}", f"freetype={features.version('freetype2')}",
                 f"numpy={numpy.__version__}"):
        h.update(part.encode() + b"\0")
    here = Path(__file__).parent
    for path in [here / m for m in _RULE_MODULES] + [Path(p) for p in font_table().paths]:
        h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:32]


def cached_selection(min_fonts: int = MIN_FONTS) -> Selection:
    """select_classes(min_fonts), from the cache when it holds this key's answer."""
    path = cache_dir() / "glyph-selection" / f"{selection_key(min_fonts)}.json"
    selection = _read(path)
    if selection is not None:
        log.info("glyph classes from %s", path)
        return selection
    selection = select_classes(min_fonts)
    try:
        write_json(path, _to_json(selection))
    except OSError as exc:  # a read-only or full cache costs the survey next time, nothing else
        log.info("glyph class selection not cached (%s)", exc)
    return selection


def _to_json(s: Selection) -> dict:
    return {
        "classes": list(s.classes),
        "fonts": {str(cp): [list(pair) for pair in s.fonts[cp]] for cp in s.classes},
        "dropped_lookalikes": {str(cp): kept for cp, kept in s.dropped_lookalikes.items()},
    }


def _read(path: Path) -> Selection | None:
    try:
        data = json.loads(path.read_text())
        classes = tuple(data["classes"])
        fonts = {int(cp): tuple((f, code) for f, code in pairs) for cp, pairs in data["fonts"].items()}
        dropped = {int(cp): kept for cp, kept in data["dropped_lookalikes"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    values = (*classes, *dropped.values(), *(x for pairs in fonts.values() for pair in pairs for x in pair))
    if not all(type(v) is int and v >= 0 for v in values):
        return None
    n_fonts = len(font_table().paths)
    if not classes or list(classes) != sorted(set(classes)) or set(fonts) != set(classes):
        return None
    if any(not pairs or any(f >= n_fonts for f, _ in pairs) for pairs in fonts.values()):
        return None
    return Selection(classes, fonts, dropped)
