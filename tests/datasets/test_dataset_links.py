"""Symbolic links in a dataset folder: those that leave it are refused by `prepare` and by
`version` alike; those that stay inside are read by one and hashed by the other."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from miniature import make_cub, md5  # noqa: E402

from faults import cli, error_line  # noqa: E402
from xbml.datasets.registry import get_dataset  # noqa: E402
from xbml.errors import DataError  # noqa: E402
from xbml.workflow.data_version import content_hash  # noqa: E402


@pytest.fixture(scope="module")
def cub_raw(tmp_path_factory):
    work = tmp_path_factory.mktemp("cub")
    mini = make_cub(work)
    raw = work / "raw"
    files = [{"name": name, "md5": md5(path), "local": str(path)} for name, path in mini.files.items()]
    get_dataset("cub200").fetch(raw, {"files": files, "expected_counts": mini.counts}, progress=False)
    return raw


@pytest.fixture
def raw(cub_raw, tmp_path):
    copy = tmp_path / "raw"
    shutil.copytree(cub_raw, copy, symlinks=True)
    return copy


def _an_image(raw: Path) -> Path:
    return sorted(raw.rglob("*.jpg"))[0]


def _link_out(path: Path, outside: Path) -> None:
    """Move `path` (a file or class folder) outside the dataset and leave a link in its place."""
    shutil.move(path, outside)
    path.symlink_to(outside, target_is_directory=outside.is_dir())


@pytest.mark.parametrize("what", ["image", "class-folder"])
def test_links_that_leave_the_raw_folder_are_refused_by_prepare_and_version(capsys, raw, tmp_path, what):
    image = _an_image(raw)
    leaving = image if what == "image" else image.parent
    _link_out(leaving, tmp_path / "elsewhere")
    code, err = cli(capsys, "prepare", "cub200", "--raw", raw, "--out", tmp_path / "prepared")
    line = error_line(code, err, "symbolic link", str(raw), leaving.relative_to(raw).as_posix())
    assert "copy the files in" in line
    assert not (tmp_path / "prepared").exists()
    code, err = cli(capsys, "version", "cub200", "--path", raw, "--out", tmp_path / "receipt.json", "--no-dvc")
    error_line(code, err, "symbolic link", leaving.relative_to(raw).as_posix())
    assert not (tmp_path / "receipt.json").exists()


def test_links_inside_the_folder_are_read_and_hashed_as_the_files_they_name(capsys, raw, tmp_path):
    image = _an_image(raw)
    copied = tmp_path / "copied"
    shutil.copytree(raw, copied)
    sibling = sorted(image.parent.glob("*.jpg"))[1]
    image.unlink()
    image.symlink_to(sibling.name)  # relative, inside, the way a deduplicating copy makes it
    shutil.copyfile(sibling, copied / image.relative_to(raw))
    code, err = cli(capsys, "prepare", "cub200", "--raw", raw, "--out", tmp_path / "prepared")
    assert code == 0, err
    assert content_hash(raw) == content_hash(copied)


def test_a_glyph_store_linked_from_outside_is_refused(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    np.savez(tmp_path / "outside.npz", images=np.zeros((2, 8, 8), np.uint8))
    (raw / "glyphs.npz").symlink_to(tmp_path / "outside.npz")
    (raw / "glyphs.json").write_text(json.dumps({"params": {}}))
    with pytest.raises(DataError, match="glyphs.npz"):
        get_dataset("glyphs").prepare(raw, tmp_path / "prepared")


def test_a_link_loop_inside_the_folder_ends(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f").write_text("x")
    (tmp_path / "d" / "sub" / "up").symlink_to("..", target_is_directory=True)
    digest, files, size = content_hash(tmp_path / "d")
    assert (files, size) == (1, 1)
