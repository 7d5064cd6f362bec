"""xbml.datasets.download against a real local HTTP server (Range, cuts, 404s, wrong checksums)."""

from __future__ import annotations

import hashlib
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from miniature import FileServer, unused_port  # noqa: E402

from xbml.datasets import download as dl  # noqa: E402
from xbml.errors import ConfigError, DataError  # noqa: E402

PAYLOAD = os.urandom(3 * dl.CHUNK + 12345)
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def _no_proxy_no_pause(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(dl, "RETRY_PAUSE_S", 0.0)


@pytest.fixture
def server():
    with FileServer() as s:
        yield s


def test_download_verifies_md5_and_sha256(server, tmp_path):
    url = server.add("/data/file.bin", PAYLOAD)
    out = dl.download([url], tmp_path / "file.bin", {"md5": MD5.upper(), "sha256": SHA256}, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "file.bin.part").exists()
    assert server.gets() == [("/data/file.bin", None)]


def test_file_hashes_match_hashlib(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(PAYLOAD)
    assert dl.file_hashes(p, ("md5", "sha256")) == {"md5": MD5, "sha256": SHA256}


def test_resume_after_connection_cut(server, tmp_path):
    url = server.add("/big.tgz", PAYLOAD)
    cut = dl.CHUNK + 777
    server.cut_once["/big.tgz"] = cut
    out = dl.download([url], tmp_path / "big.tgz", {"md5": MD5}, progress=False)
    assert dl.file_hash(out, "md5") == MD5
    requests = server.gets("/big.tgz")
    assert len(requests) == 2
    assert requests[0][1] is None
    assert requests[1][1] == f"bytes={cut}-"


def test_part_left_by_a_failed_run_is_resumed_by_the_next(server, tmp_path):
    url = server.add("/big.tgz", PAYLOAD)
    server.cut_once["/big.tgz"] = 5000
    with pytest.raises(DataError, match="partial download"):
        dl.download([url], tmp_path / "big.tgz", {"md5": MD5}, progress=False, attempts=1)
    part = tmp_path / "big.tgz.part"
    assert part.stat().st_size == 5000 and not (tmp_path / "big.tgz").exists()
    dl.download([url], tmp_path / "big.tgz", {"md5": MD5}, progress=False)
    assert server.gets("/big.tgz")[-1][1] == "bytes=5000-"
    assert (tmp_path / "big.tgz").read_bytes() == PAYLOAD and not part.exists()


def test_server_without_range_support_restarts_cleanly(server, tmp_path):
    url = server.add("/f", PAYLOAD)
    (tmp_path / "f.part").write_bytes(b"garbage that is not the start of the file")
    server.ignore_range = True
    out = dl.download([url], tmp_path / "f", {"md5": MD5}, progress=False)
    assert out.read_bytes() == PAYLOAD


def test_complete_part_is_finished_through_416(server, tmp_path):
    url = server.add("/f", PAYLOAD)
    (tmp_path / "f.part").write_bytes(PAYLOAD)
    dl.download([url], tmp_path / "f", {"md5": MD5}, progress=False)
    assert server.gets("/f") == [("/f", f"bytes={len(PAYLOAD)}-")]
    assert (tmp_path / "f").read_bytes() == PAYLOAD


def test_404_and_unreachable_mirrors_fall_through(server, tmp_path, caplog):
    good = server.add("/mirror2/f", PAYLOAD)
    server.missing.add("/mirror1/f")
    dead = f"http://127.0.0.1:{unused_port()}/f"
    with caplog.at_level("WARNING", logger="xbml.datasets.download"):
        dl.download([server.url("/mirror1/f"), dead, good], tmp_path / "f", {"md5": MD5}, progress=False)
    assert [p for p, _ in server.gets()] == ["/mirror1/f", "/mirror2/f"]
    assert "HTTP 404" in caplog.text and "cannot reach" in caplog.text


def test_wrong_checksum_is_refused_and_deleted(server, tmp_path):
    url = server.add("/f.tgz", PAYLOAD)
    wrong = "0" * 32
    with pytest.raises(DataError) as err:
        dl.download([url], tmp_path / "f.tgz", {"md5": wrong}, progress=False)
    msg = str(err.value)
    assert "f.tgz" in msg and wrong in msg and MD5 in msg and "deleted" in msg
    assert list(tmp_path.iterdir()) == []


def test_html_page_instead_of_file_is_named(server, tmp_path):
    url = server.add("/f.zip", b"<!DOCTYPE html><html>quota exceeded</html>")
    with pytest.raises(DataError, match="web page"):
        dl.download([url], tmp_path / "f.zip", {"md5": MD5}, progress=False)


def test_wrong_mirror_then_good_mirror(server, tmp_path):
    bad = server.add("/bad/f", b"something else")
    good = server.add("/good/f", PAYLOAD)
    dl.download([bad, good], tmp_path / "f", {"md5": MD5}, progress=False)
    assert (tmp_path / "f").read_bytes() == PAYLOAD


def test_verified_file_is_not_downloaded_again(server, tmp_path):
    url = server.add("/f", PAYLOAD)
    dl.download([url], tmp_path / "f", {"md5": MD5}, progress=False)
    dl.download([url], tmp_path / "f", {"md5": MD5}, progress=False)
    assert len(server.gets()) == 1


def test_every_mirror_failing_names_them(server, tmp_path):
    server.missing.add("/a")
    with pytest.raises(DataError) as err:
        dl.download([server.url("/a"), "ftp://example.org/f"], tmp_path / "f", {"md5": MD5}, progress=False)
    assert "HTTP 404" in str(err.value) and "only http(s)" in str(err.value)
    with pytest.raises(DataError, match="no download URL"):
        dl.download([], tmp_path / "g", {"md5": MD5}, progress=False)


def test_bad_checksum_configuration_is_a_config_error():
    with pytest.raises(ConfigError, match="md5 must be 32"):
        dl.normalize_checksums({"md5": "abc"})
    with pytest.raises(ConfigError, match="unknown checksum algorithm"):
        dl.normalize_checksums({"crc32": "abc"})


# -- no checksum configured: the content is still judged ---------------------------------------

HTML = b"<!DOCTYPE html>\n<html><head><title>Quota exceeded</title></head><body>Try later</body></html>\n"


def _real_files(tmp_path):
    """A real .tgz, .zip and .mat, the formats the published datasets come in."""
    import io
    import tarfile
    import zipfile

    from scipy.io import savemat

    from miniature import tar_bytes

    info = tarfile.TarInfo("top/a.txt")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("top/a.txt", "a")
    savemat(tmp_path / "real.mat", {"annotations": [1, 2, 3]})
    return {
        "f.tgz": tar_bytes([(info, b"a")]),
        "f.zip": zbuf.getvalue(),
        "cars_annos.mat": (tmp_path / "real.mat").read_bytes(),
        "list.txt": b"2\nimage_name item_id evaluation_status\n",
    }


@pytest.mark.parametrize(
    "name, body, why",
    [
        ("cars_annos.mat", HTML, "web page"),
        ("f.tgz", HTML, "web page"),
        ("f.zip", HTML, "web page"),
        ("list.txt", HTML, "web page"),
        ("f.tgz", b"Download quota exceeded for this file, try again in 24 hours.\n", "is text"),
        ("cars_annos.mat", b"404: Not Found", "is text"),
        ("f.tgz", b"\x1f\x8b\x08\x00" + os.urandom(300), "tar archive"),
        ("f.zip", os.urandom(300), "zip archive"),
        ("cars_annos.mat", os.urandom(300), "MATLAB header"),
        ("f.zip", b"", "is empty"),
    ],
)
def test_unverified_download_with_the_wrong_content_is_refused_and_not_kept(server, tmp_path, name, body, why):
    url = server.add(f"/{name}", body)
    dest = tmp_path / "downloads" / name
    with pytest.raises(DataError) as err:
        dl.download([url], dest, None, progress=False)
    msg = str(err.value)
    assert name in msg and why in msg and "not recorded as fetched" in msg and "checksum" in msg
    assert list(dest.parent.iterdir()) == []  # neither the file nor a .part: the next fetch starts over


def test_real_formats_pass_the_content_check(tmp_path):
    for name, body in _real_files(tmp_path).items():
        (tmp_path / name).write_bytes(body)
        assert dl.content_problem(tmp_path / name) is None, name


def test_web_page_mirror_falls_through_to_a_good_one(server, tmp_path):
    good = _real_files(tmp_path)["f.tgz"]
    urls = [server.add("/login/f.tgz", HTML), server.add("/good/f.tgz", good)]
    out = dl.download(urls, tmp_path / "dl" / "f.tgz", None, progress=False)
    assert out.read_bytes() == good


def test_kept_unverified_copy_with_the_wrong_content_is_downloaded_again(server, tmp_path):
    good = _real_files(tmp_path)["cars_annos.mat"]
    url = server.add("/cars_annos.mat", good)
    dest = tmp_path / "dl" / "cars_annos.mat"
    dest.parent.mkdir()
    dest.write_bytes(HTML)  # left by a version that accepted any unverified file
    dl.download([url], dest, None, progress=False)
    assert dest.read_bytes() == good and len(server.gets()) == 1
    dl.download([url], dest, None, progress=False)  # a good copy is kept
    assert len(server.gets()) == 1
