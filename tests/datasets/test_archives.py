"""xbml.datasets.archives: unsafe members are refused by name and nothing is extracted."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from miniature import tar_bytes  # noqa: E402

from xbml.datasets.archives import check_archive, extract, extract_into  # noqa: E402
from xbml.errors import DataError  # noqa: E402


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), f"content of {name}".encode()


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def _tar(path: Path, members) -> Path:
    path.write_bytes(tar_bytes(members))
    return path


def _zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for n in names:
            zf.writestr(zipfile.ZipInfo(n), f"content of {n}")
    return path


def _assert_nothing_extracted(work: Path, target: Path) -> None:
    assert not target.exists()
    leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}")]
    assert leftovers == []
    assert not (work / "evil").exists() and not (work.parent / "evil").exists()


def test_safe_tar_is_extracted_atomically(tmp_path):
    archive = _tar(
        tmp_path / "ok.tgz",
        [_dir("top"), _dir("top/sub"), _file("top/sub/a.txt"), _file("./top/b.txt"), _link("top/link", "sub/a.txt")],
    )
    target = tmp_path / "out" / "dataset"
    extract(archive, target)
    assert (target / "top/sub/a.txt").read_text() == "content of top/sub/a.txt"
    assert (target / "top/b.txt").exists()
    assert (target / "top/link").is_symlink() and (target / "top/link").read_text() == "content of top/sub/a.txt"
    assert sorted(p.name for p in target.parent.iterdir()) == ["dataset"]


@pytest.mark.parametrize(
    "members, bad, why",
    [
        ([_file("top/a.txt"), _file("../evil")], "../evil", "outside the target"),
        ([_file("top/a.txt"), _file("top/../../evil")], "top/../../evil", "outside the target"),
        ([_file("top/a.txt"), _file("/tmp/evil")], "/tmp/evil", "absolute path"),
        ([_file("top/a.txt"), _link("top/out", "../../evil")], "top/out", "outside the target"),
        ([_file("top/a.txt"), _link("top/etc", "/etc")], "top/etc", "absolute path"),
        ([_file("top/a.txt"), _link("top/hard", "../evil", tarfile.LNKTYPE)], "top/hard", "outside the target"),
        ([_link("top/l", "."), _file("top/l/x")], "top/l/x", "through the symbolic link"),
        ([_link("a/b/up", "../.."), _link("c", "a/b/up/../evil")], "c", "goes through the link"),
    ],
)
def test_unsafe_tar_member_is_refused_by_name(tmp_path, members, bad, why):
    work = tmp_path / "work"
    work.mkdir()
    archive = _tar(work / "bad.tgz", members)
    target = work / "dataset"
    with pytest.raises(DataError) as err:
        extract(archive, target)
    assert repr(bad) in str(err.value) and why in str(err.value)
    assert "Nothing was extracted" in str(err.value)
    _assert_nothing_extracted(work, target)


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_device_files_and_fifos_are_refused(tmp_path, kind):
    info = tarfile.TarInfo("top/dev")
    info.type = kind
    archive = _tar(tmp_path / "dev.tgz", [_file("top/a.txt"), (info, None)])
    with pytest.raises(DataError, match="'top/dev'.*special file"):
        extract(archive, tmp_path / "dataset")
    _assert_nothing_extracted(tmp_path, tmp_path / "dataset")


@pytest.mark.parametrize("bad", ["../evil", "top/../../evil", "/evil", "C:/evil"])
def test_unsafe_zip_member_is_refused_by_name(tmp_path, bad):
    work = tmp_path / "work"
    work.mkdir()
    archive = _zip(work / "bad.zip", ["top/a.txt", bad])
    with pytest.raises(DataError) as err:
        extract(archive, work / "dataset")
    assert repr(bad) in str(err.value)
    _assert_nothing_extracted(work, work / "dataset")


def test_safe_zip_is_extracted(tmp_path):
    archive = _zip(tmp_path / "ok.zip", ["top/", "top/a.txt", "top/sub/b.txt"])
    assert check_archive(archive) == ["top/", "top/a.txt", "top/sub/b.txt"]
    extract(archive, tmp_path / "dataset")
    assert (tmp_path / "dataset/top/sub/b.txt").read_text() == "content of top/sub/b.txt"


def test_existing_target_is_kept_unless_overwrite(tmp_path):
    archive = _zip(tmp_path / "ok.zip", ["top/a.txt"])
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(DataError, match="already exists"):
        extract(archive, target)
    extract(archive, target, overwrite=True)
    assert (target / "top/a.txt").exists() and not (target / "old.txt").exists()


def test_damaged_and_unknown_archives_are_data_errors(tmp_path):
    good = tar_bytes([_file("top/a.txt")] * 1)
    damaged = tmp_path / "damaged.tgz"
    damaged.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError):
        extract(damaged, tmp_path / "d1")
    text = tmp_path / "notes.txt"
    text.write_text("not an archive")
    with pytest.raises(DataError, match="neither a tar nor a zip"):
        extract(text, tmp_path / "d2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.tgz", "notes.txt"]


def test_extract_into_requires_existing_folder(tmp_path):
    archive = _zip(tmp_path / "ok.zip", ["top/a.txt"])
    with pytest.raises(DataError, match="not a folder"):
        extract_into(archive, tmp_path / "missing")


def test_tar_data_filter_drops_unsafe_permission_bits(tmp_path):
    info, data = _file("top/a.sh")
    info.mode = 0o4777  # setuid, world-writable
    archive = _tar(tmp_path / "perm.tgz", [(info, data)])
    extract(archive, tmp_path / "dataset")
    mode = (tmp_path / "dataset/top/a.sh").stat().st_mode
    assert not mode & 0o4000 and not mode & 0o022


def test_in_memory_tar_helper_roundtrip():
    data = tar_bytes([_file("x/y.txt")])
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.getnames() == ["x/y.txt"]


def test_extracted_target_gets_normal_folder_permissions(tmp_path):
    archive = _zip(tmp_path / "ok.zip", ["top/a.txt"])
    umask = os.umask(0o022)
    try:
        extract(archive, tmp_path / "dataset")
    finally:
        os.umask(umask)
    assert (tmp_path / "dataset").stat().st_mode & 0o777 == 0o755


def _conflicting_tar(path: Path, order: str) -> Path:
    members = [_file("top/x"), _file("top/x/y")]
    return _tar(path, members if order == "file first" else members[::-1])


def _conflicting_zip(path: Path, order: str) -> Path:
    names = ["top/x", "top/x/y"]
    return _zip(path, names if order == "file first" else names[::-1])


@pytest.mark.parametrize("order", ["file first", "file last"])
@pytest.mark.parametrize("make", [_conflicting_tar, _conflicting_zip], ids=["tar", "zip"])
def test_file_and_member_below_it_are_refused_as_conflicting(tmp_path, make, order):
    work = tmp_path / "work"
    work.mkdir()
    archive = make(work / "conflict.archive", order)
    target = work / "dataset"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(DataError) as err:
        extract(archive, target, overwrite=True)
    msg = str(err.value)
    assert "'top/x/y'" in msg and "conflicts with the file member 'top/x'" in msg and "download it again" in msg
    assert sorted(p.name for p in work.iterdir()) == ["conflict.archive", "dataset"]
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    staging = work / "staging"
    staging.mkdir()
    with pytest.raises(DataError, match="conflicts"):
        extract_into(archive, staging)
    assert list(staging.iterdir()) == []


def test_directory_member_over_a_file_member_is_refused(tmp_path):
    archive = _tar(tmp_path / "dir.tgz", [_file("top/x"), _dir("top/x")])
    with pytest.raises(DataError, match="'top/x' conflicts with the file member 'top/x'"):
        check_archive(archive)


def test_stale_extraction_folders_are_removed_but_lookalikes_kept(tmp_path):
    from xbml.atomic import make_temp_dir

    archive = _zip(tmp_path / "ok.zip", ["top/a.txt"])
    stale = make_temp_dir(".dataset.extracting-", tmp_path)
    (stale / "half.txt").write_text("killed mid-way")
    keep = tmp_path / ".dataset.extracting-mine"
    keep.mkdir()
    extract(archive, tmp_path / "dataset")
    assert not stale.exists() and keep.is_dir()
