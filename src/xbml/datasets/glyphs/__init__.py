"""`glyphs`: the embedded default dataset, generated offline from the fonts inside matplotlib.

One class per Unicode character. The characters are those that

- at least ``MIN_FONTS`` of the shipped fonts draw (DejaVu Sans/Serif/Mono in 4 styles,
  STIX General in 4 styles, Computer Modern cmr/cmb/cmss/cmti/cmtt/cmmi/cmsy);
- are visible (no whitespace, control, format or combining marks, no Braille cells) and have
  no Unicode decomposition (accented letters, ligatures, compatibility forms), so no class is
  another class plus a mark;
- are not look-alikes of a character kept before them in code point order (Latin A / Greek
  Alpha / Cyrillic A keep only Latin A).

Every image is drawn from its own random generator seeded with ``(seed, code point, index)``,
so the set does not depend on generation order or on the number of worker processes.

The modules, one concept each: :mod:`.fonts` (the fonts and what they draw), :mod:`.render`
(one image), :mod:`.selection` (which characters are classes), :mod:`.store` (generating the
arrays and the npz + JSON store) and :mod:`.dataset` (the registered ``fetch`` / ``prepare``).
"""

from xbml.datasets.glyphs.dataset import DEFAULTS, GENERATOR_VERSION, SOURCES_SCHEMA, Glyphs, resolve_params
from xbml.datasets.glyphs.fonts import (
    DEFAULT_WORKERS,
    FONT_NAMES,
    MIN_FONTS,
    FontTable,
    candidate_chars,
    font_table,
    font_table_paths,
)
from xbml.datasets.glyphs.render import clean_render, render_image
from xbml.datasets.glyphs.selection import (
    COMPARE_FONTS,
    LOOKALIKE_DISTANCE,
    LOOKALIKE_LOCAL,
    Selection,
    held_out_classes,
    local_differences,
    lookalike_distances,
    lookalike_pairs,
    select_classes,
    signatures,
    subset_classes,
    survey,
)
from xbml.datasets.glyphs.selection_cache import cached_selection
from xbml.datasets.glyphs.store import JSON_NAME, NPZ_NAME, arrays_sha256, file_sha256, generate, write_npz

__all__ = [
    "COMPARE_FONTS",
    "DEFAULTS",
    "DEFAULT_WORKERS",
    "FONT_NAMES",
    "FontTable",
    "GENERATOR_VERSION",
    "Glyphs",
    "JSON_NAME",
    "LOOKALIKE_DISTANCE",
    "LOOKALIKE_LOCAL",
    "MIN_FONTS",
    "NPZ_NAME",
    "SOURCES_SCHEMA",
    "Selection",
    "arrays_sha256",
    "candidate_chars",
    "clean_render",
    "file_sha256",
    "font_table",
    "font_table_paths",
    "generate",
    "held_out_classes",
    "local_differences",
    "lookalike_distances",
    "lookalike_pairs",
    "render_image",
    "resolve_params",
    "select_classes",
    "cached_selection",
    "signatures",
    "subset_classes",
    "survey",
    "write_npz",
]
