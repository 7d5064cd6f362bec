"""The glyph class selection remembered on disk: read back only when it is the survey's answer
for the same fonts, code and libraries, and recomputed whenever the file is not to be trusted."""

from __future__ import annotations

import json

import PIL
import pytest

from xbml.datasets.glyphs import Glyphs
from xbml.datasets.glyphs.fonts import MIN_FONTS
from xbml.datasets.glyphs.selection import select_classes
from xbml.datasets.glyphs.selection_cache import cached_selection, selection_key


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XBML_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "glyph-selection"


def test_the_cached_selection_is_the_survey_and_is_what_the_next_call_reads(cache):
    first = cached_selection()
    assert first == select_classes()
    files = sorted(cache.iterdir())
    assert [f.name for f in files] == [f"{selection_key()}.json"]
    # the next call answers from the file: edit it and the edit comes back
    data = json.loads(files[0].read_text())
    last = data["classes"].pop()
    del data["fonts"][str(last)]
    files[0].write_text(json.dumps(data))
    assert cached_selection().classes == first.classes[:-1]


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"{\"classes\": [1, 2",
        b"\xff\xfe not text",
        b"[1, 2, 3]",
        b'{"classes": [66, 65], "fonts": {"65": [[0, 65]], "66": [[0, 66]]}, "dropped_lookalikes": {}}',
        b'{"classes": [65], "fonts": {}, "dropped_lookalikes": {}}',
        b'{"classes": [65], "fonts": {"65": [[0, "A"]]}, "dropped_lookalikes": {}}',
        b'{"classes": [65], "fonts": {"65": []}, "dropped_lookalikes": {}}',
        b'{"classes": [65], "fonts": {"65": [[99, 65]]}, "dropped_lookalikes": {}}',
        b'{"classes": [-65], "fonts": {"-65": [[0, 65]]}, "dropped_lookalikes": {}}',
    ],
    ids=["empty", "truncated", "binary", "not-an-object", "unsorted", "fonts-missing", "not-ints", "no-font",
         "unknown-font", "negative"],
)
def test_a_damaged_cache_file_is_recomputed_and_replaced(cache, damage):
    path = cache / f"{selection_key()}.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(damage)
    assert cached_selection() == select_classes()
    assert json.loads(path.read_text())["classes"] == list(select_classes().classes)


def test_a_cache_that_cannot_be_written_costs_only_the_survey(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XBML_CACHE_DIR", str(blocker))
    assert cached_selection() == select_classes()


def test_the_key_changes_with_what_decides_the_selection(monkeypatch):
    key = selection_key()
    assert key == selection_key() and len(key) == 32
    assert selection_key(MIN_FONTS + 1) != key
    monkeypatch.setattr(PIL, "__version__", "0.0.0")  # another rasteriser may draw other pixels
    assert selection_key() != key


def test_fetch_takes_its_classes_from_the_cache(cache, tmp_path):
    Glyphs.fetch(tmp_path / "raw", {"max_classes": 12, "images_per_class": 2}, seed=0, progress=False)
    assert (cache / f"{selection_key()}.json").is_file()
