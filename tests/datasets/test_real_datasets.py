"""CUB-200-2011, Cars196, SOP and In-Shop end to end on miniatures in their real formats,
served by a local HTTP server: download, checksum, safe extraction, prepare, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xbml.datasets.sources import PUBLISHED_SOURCES
import yaml

sys.path.insert(0, os.path.dirname(__file__))
from miniature import BUILDERS, FileServer, Miniature, md5  # noqa: E402

from xbml.datasets import download as dl  # noqa: E402
from xbml.datasets.image_store import ImageStore  # noqa: E402
from xbml.datasets.manifest import read_manifest  # noqa: E402
from xbml.datasets.real_dataset import MARKER  # noqa: E402
from xbml.datasets.registry import get_dataset  # noqa: E402
from xbml.datasets.sources import load_sources  # noqa: E402
from xbml.errors import ConfigError, DataError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NAMES = ("cub200", "cars196", "sop", "inshop")
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(dl, "RETRY_PAUSE_S", 0.0)


@pytest.fixture(scope="module")
def minis(tmp_path_factory) -> dict[str, Miniature]:
    work = tmp_path_factory.mktemp("miniatures")
    out = {}
    for name, build in BUILDERS.items():
        (work / name).mkdir()
        out[name] = build(work / name)
    return out


@pytest.fixture(scope="module")
def server(minis):
    with FileServer() as s:
        for name, mini in minis.items():
            for fname, path in mini.files.items():
                s.add(f"/{name}/{fname}", path)
        yield s


def sources_for(mini: Miniature, server: FileServer, tmp: Path, *, local: bool = False, counts=True) -> dict:
    files = []
    for fname, path in mini.files.items():
        entry = {"name": fname, "md5": md5(path)}
        if local:
            entry["local"] = str(path)
        else:
            entry["urls"] = [server.url(f"/{mini.name}/{fname}")]
        files.append(entry)
    block = {"download_dir": str(tmp / "downloads"), "files": files}
    if counts:
        block["expected_counts"] = dict(mini.counts)
    return block


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("name", NAMES)
def test_fetch_and_prepare_end_to_end(name, minis, server, tmp_path):
    mini = minis[name]
    ds = get_dataset(name)
    raw, out = tmp_path / "raw" / name, tmp_path / "prepared" / name
    # In-Shop has no URL: the documented route is `local:`; the others download
    ds.fetch(raw, sources_for(mini, server, tmp_path, local=(name == "inshop")), progress=False)
    marker = json.loads((raw / MARKER).read_text())
    assert marker["dataset"] == name
    assert {f: marker["files"][f]["md5"] for f in mini.files} == {f: md5(p) for f, p in mini.files.items()}
    assert _leftovers(raw.parent) == []
    if name != "inshop":
        assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == sorted(mini.files)

    ds.prepare(raw, out, val_fraction=0.2, seed=3, image_store=16)  # the uint8 store of every format
    m = read_manifest(out)
    info = json.loads((out / "dataset.json").read_text())
    assert info["name"] == name and info["channels"] == 3
    store = ImageStore(m.image_store)
    assert len(store) == len(m) and min(store.image(len(m) - 1).shape[1:]) == 16
    assert not os.path.isabs(info["image_root"])
    assert m.image_root == ds.image_root(raw).resolve()
    assert all((m.image_root / p).is_file() for p in m.images)
    assert sorted(m.classes("test").tolist()) == sorted(mini.test_classes)
    assert len(m.classes("val")) >= 1
    assert sorted(m.classes("train").tolist() + m.classes("val").tolist()) == sorted(mini.train_classes)
    fit = m.splits == "train"
    assert set(m.folds[fit].tolist()) <= {0, 1, 2, 3} and set(m.folds[~fit].tolist()) == {-1}
    # folds are class-disjoint
    for c in m.classes("train"):
        assert len(set(m.folds[m.labels == c].tolist())) == 1
    test = m.splits == "test"
    if name == "inshop":
        assert info["protocol"] == "query_gallery"
        assert set(m.roles[test].tolist()) == {"query", "gallery"}
        assert (m.roles[test] == "query").sum() == mini.counts["query_images"]
        assert (m.roles[test] == "gallery").sum() == mini.counts["gallery_images"]
        assert set(m.roles[~test].tolist()) == {"both"}
        assert m.images[0].startswith("img/")
    else:
        assert info["protocol"] == "self"
        assert set(m.roles.tolist()) == {"both"}
        assert test.sum() == mini.counts["test_images"]
    assert (~test).sum() == mini.counts["train_images"]


def test_second_fetch_makes_no_request(minis, server, tmp_path):
    ds, mini = get_dataset("cub200"), minis["cub200"]
    raw = tmp_path / "raw" / "cub200"
    sources = sources_for(mini, server, tmp_path)
    ds.fetch(raw, sources, progress=False)
    before = len(server.gets())
    stamp = (raw / MARKER).stat().st_mtime_ns
    ds.fetch(raw, sources, progress=False)
    assert len(server.gets()) == before
    assert (raw / MARKER).stat().st_mtime_ns == stamp


def test_404_mirror_falls_through_and_cut_download_resumes(minis, server, tmp_path):
    ds, mini = get_dataset("cars196"), minis["cars196"]
    sources = sources_for(mini, server, tmp_path)
    archive = sources["files"][0]
    assert archive["name"] == "car_ims.tgz"
    server.missing.add("/dead-mirror/car_ims.tgz")
    archive["urls"] = [server.url("/dead-mirror/car_ims.tgz")] + archive["urls"]
    cut = mini.files["car_ims.tgz"].stat().st_size // 2
    server.cut_once["/cars196/car_ims.tgz"] = cut
    n = len(server.gets())
    ds.fetch(tmp_path / "raw", sources, progress=False)
    new = server.gets()[n:]
    assert new[0] == ("/dead-mirror/car_ims.tgz", None)
    assert ("/cars196/car_ims.tgz", None) in new
    assert ("/cars196/car_ims.tgz", f"bytes={cut}-") in new
    assert md5(tmp_path / "downloads" / "car_ims.tgz") == md5(mini.files["car_ims.tgz"])
    ds.prepare(tmp_path / "raw", tmp_path / "prepared")


def test_wrong_checksum_leaves_no_dataset(minis, server, tmp_path):
    ds, mini = get_dataset("sop"), minis["sop"]
    sources = sources_for(mini, server, tmp_path)
    sources["files"][0]["md5"] = "0123456789abcdef0123456789abcdef"
    raw = tmp_path / "raw" / "sop"
    with pytest.raises(DataError) as err:
        ds.fetch(raw, sources, progress=False)
    msg = str(err.value)
    assert "Stanford_Online_Products.zip" in msg
    assert "0123456789abcdef0123456789abcdef" in msg and md5(mini.files["Stanford_Online_Products.zip"]) in msg
    assert not raw.exists()
    assert list((tmp_path / "downloads").iterdir()) == []
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []


def test_bad_file_in_a_multi_file_dataset_unpacks_nothing(minis, server, tmp_path):
    ds, mini = get_dataset("cars196"), minis["cars196"]
    sources = sources_for(mini, server, tmp_path)
    sources["files"][1]["md5"] = "f" * 32  # cars_annos.mat, obtained after car_ims.tgz
    with pytest.raises(DataError, match="cars_annos.mat"):
        ds.fetch(tmp_path / "raw" / "cars", sources, progress=False)
    assert not (tmp_path / "raw").exists()


def test_local_file_with_wrong_checksum_is_refused_but_kept(minis, server, tmp_path):
    ds, mini = get_dataset("cub200"), minis["cub200"]
    sources = sources_for(mini, server, tmp_path, local=True)
    sources["files"][0]["md5"] = "e" * 32
    with pytest.raises(DataError, match="left as it is"):
        ds.fetch(tmp_path / "raw", sources, progress=False)
    assert mini.files["CUB_200_2011.tgz"].exists()
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("which", ["named", "parent"])
def test_local_extracted_folder(minis, tmp_path, which):
    ds, mini = get_dataset("inshop"), minis["inshop"]
    folder = mini.extracted["img.zip"]  # the folder named img
    sources = {
        "files": [
            {"name": "img.zip", "md5": None, "local": str(folder if which == "named" else folder.parent)},
            {"name": "list_eval_partition.txt", "local": str(mini.files["list_eval_partition.txt"])},
        ],
        "expected_counts": mini.counts,
    }
    raw = tmp_path / "raw"
    ds.fetch(raw, sources, progress=False)
    assert json.loads((raw / MARKER).read_text())["files"]["img.zip"]["source"].startswith("local folder")
    # no checksum configured for the partition file: its sha256 is recorded
    assert len(json.loads((raw / MARKER).read_text())["files"]["list_eval_partition.txt"]["sha256"]) == 64
    ds.prepare(raw, tmp_path / "prepared")
    assert len(read_manifest(tmp_path / "prepared")) == sum(
        mini.counts[k] for k in ("train_images", "query_images", "gallery_images")
    )


def test_inshop_without_local_says_what_to_download(tmp_path):
    sources = load_sources(REPO / "config" / "datasets.yaml", "inshop")
    with pytest.raises(DataError) as err:
        get_dataset("inshop").fetch(tmp_path / "raw", sources, progress=False)
    msg = str(err.value)
    for needed in ("img.zip", "list_eval_partition.txt", "Google Drive", "local:", "docs/datasets.md"):
        assert needed in msg
    assert not (tmp_path / "raw").exists()


def test_missing_local_path_is_named(tmp_path):
    sources = {"files": [{"name": "img.zip", "local": str(tmp_path / "nowhere.zip")}]}
    with pytest.raises(DataError, match="nowhere.zip given for img.zip does not exist"):
        get_dataset("inshop").fetch(tmp_path / "raw", sources, progress=False)


def test_published_counts_are_enforced(minis, server, tmp_path):
    ds, mini = get_dataset("cub200"), minis["cub200"]
    raw = tmp_path / "raw"
    ds.fetch(raw, sources_for(mini, server, tmp_path, counts=False), progress=False)
    assert json.loads((raw / MARKER).read_text())["expected_counts"] == ds.expected_counts
    with pytest.raises(DataError) as err:
        ds.prepare(raw, tmp_path / "prepared")
    assert "published" in str(err.value) and "5,864" in str(err.value) and "expected_counts" in str(err.value)
    assert not (tmp_path / "prepared" / "dataset.json").exists()
    # the same folder fetched again with the miniature's counts: no download, the marker is updated
    n = len(server.gets())
    ds.fetch(raw, sources_for(mini, server, tmp_path), progress=False)
    assert len(server.gets()) == n
    ds.prepare(raw, tmp_path / "prepared")


def test_published_defaults():
    assert get_dataset("cub200").expected_counts["train_images"] == 5864
    assert get_dataset("cub200").expected_counts["test_images"] == 5924
    assert get_dataset("cars196").expected_counts["train_images"] == 8054
    assert get_dataset("cars196").expected_counts["test_images"] == 8131
    assert get_dataset("sop").expected_counts == {
        "train_images": 59551,
        "train_classes": 11318,
        "test_images": 60502,
        "test_classes": 11316,
    }
    inshop = get_dataset("inshop").expected_counts
    assert (inshop["train_images"], inshop["train_classes"]) == (25882, 3997)
    assert (inshop["query_images"], inshop["gallery_images"]) == (14218, 12612)


def test_missing_image_is_reported(minis, server, tmp_path):
    ds, mini = get_dataset("sop"), minis["sop"]
    raw = tmp_path / "raw"
    ds.fetch(raw, sources_for(mini, server, tmp_path), progress=False)
    victim = next((raw / "Stanford_Online_Products" / "chair_final").glob("*.JPG"))
    victim.unlink()
    with pytest.raises(DataError) as err:
        ds.prepare(raw, tmp_path / "prepared")
    assert f"chair_final/{victim.name}" in str(err.value) and "1 of" in str(err.value)


def test_foreign_raw_folder_is_not_overwritten(minis, server, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "mine.txt").write_text("precious")
    with pytest.raises(DataError, match="not written by `xbml fetch`"):
        get_dataset("cub200").fetch(raw, sources_for(minis["cub200"], server, tmp_path), progress=False)
    assert (raw / "mine.txt").read_text() == "precious"


def test_changed_checksums_fetch_again(minis, server, tmp_path):
    ds, mini = get_dataset("cub200"), minis["cub200"]
    raw = tmp_path / "raw"
    sources = sources_for(mini, server, tmp_path)
    ds.fetch(raw, sources, progress=False)
    (raw / "stale.txt").write_text("from the old fetch")
    import hashlib

    sources["files"][0]["sha256"] = hashlib.sha256(mini.files["CUB_200_2011.tgz"].read_bytes()).hexdigest()
    ds.fetch(raw, sources, progress=False)
    assert not (raw / "stale.txt").exists()
    assert "sha256" in json.loads((raw / MARKER).read_text())["files"]["CUB_200_2011.tgz"]
    assert _leftovers(tmp_path) == []


def test_prepare_is_deterministic_and_val_fraction_zero(minis, server, tmp_path):
    ds, mini = get_dataset("cars196"), minis["cars196"]
    raw = tmp_path / "raw"
    ds.fetch(raw, sources_for(mini, server, tmp_path), progress=False)
    ds.prepare(raw, tmp_path / "a", seed=1)
    ds.prepare(raw, tmp_path / "b", seed=1)
    assert (tmp_path / "a/manifest.csv").read_text() == (tmp_path / "b/manifest.csv").read_text()
    ds.prepare(raw, tmp_path / "c", val_fraction=0.0)
    assert len(read_manifest(tmp_path / "c").classes("val")) == 0
    with pytest.raises(ConfigError):
        ds.prepare(raw, tmp_path / "d", val_fraction=1.0)
    with pytest.raises(DataError, match="fetch"):
        ds.prepare(tmp_path / "nowhere", tmp_path / "e")


def test_sources_are_validated():
    ds = get_dataset("cars196")
    with pytest.raises(ConfigError, match="unknown key"):
        ds.resolve_sources({"mirror": []})
    with pytest.raises(ConfigError, match=r"files\[0\]\.name = 'cars.tgz' is invalid: it must be one of the files of Cars196: car_ims.tgz"):
        ds.resolve_sources({"files": [{"name": "cars.tgz"}]})
    with pytest.raises(ConfigError, match="unknown key"):
        ds.resolve_sources({"files": [{"name": "car_ims.tgz", "url": "http://x"}]})
    with pytest.raises(ConfigError, match="expected_counts"):
        ds.resolve_sources({"expected_counts": {"train": 3}})
    with pytest.raises(ConfigError, match="md5 must be 32"):
        ds.resolve_sources({"files": [{"name": "car_ims.tgz", "md5": "123"}]})


def test_shipped_sources_files_resolve_to_the_published_checksums():
    path = REPO / "config" / "datasets.yaml"
    blocks = yaml.safe_load(path.read_text())
    assert not any(f.keys() & {"md5", "sha256"} for b in blocks.values() for f in b.get("files", []))
    published = {
        "CUB_200_2011.tgz": "97eceeb196236b17998738112f37df78",
        "car_ims.tgz": "d5c8f0aa497503f355e17dc7886c3f14",
        "cars_annos.mat": "b407c6086d669747186bd1d764ff9dbc",
        "Stanford_Online_Products.zip": "7f73d41a2f44250d4779881525aea32e",
    }
    assert set(blocks) == {*NAMES, "glyphs"}
    for name in NAMES:
        ds = get_dataset(name)
        plan, download_dir, expected = ds.resolve_sources(load_sources(path, name))
        assert expected == ds.expected_counts
        for source in plan:
            if source.spec.name in published:
                assert source.checksums == {"md5": published[source.spec.name]}
                assert source.urls and source.local is None
        # without a sources file the same published checksums apply
        default_plan, _, _ = ds.resolve_sources({})
        assert [s.checksums for s in default_plan] == [s.checksums for s in plan]


def test_an_entry_without_checksum_or_urls_takes_the_published_ones():
    """The checksums are written only in the package's published sources; a sources file may leave them out."""
    ds = get_dataset("cub200")
    published = load_sources(PUBLISHED_SOURCES, "cub200")["files"][0]
    (source,), _, _ = ds.resolve_sources({"files": [{"name": "CUB_200_2011.tgz", "local": "/data/cub.tgz"}]})
    assert source.checksums == {"md5": published["md5"]} and source.urls == published["urls"]
    assert source.local == Path("/data/cub.tgz")
    (unverified,), _, _ = ds.resolve_sources({"files": [{"name": "CUB_200_2011.tgz", "md5": None}]})
    assert unverified.checksums == {}


def test_a_bad_value_names_key_value_and_fix():
    with pytest.raises(ConfigError) as info:
        get_dataset("cars196").resolve_sources({"expected_counts": {"train_images": -1}})
    assert str(info.value) == (
        "sources of cars196: expected_counts.train_images = -1 is invalid: it must be a count (a whole number >= 0)"
    )


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    return subprocess.run(
        [sys.executable, "-m", "xbml", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_fetch_and_prepare(minis, server, tmp_path):
    mini = minis["cars196"]
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"cars196": sources_for(mini, server, tmp_path)}))
    r = _cli(["fetch", "cars196", "--out", "raw/cars196", "--sources", str(sources), "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli(["prepare", "cars196", "--raw", "raw/cars196", "--out", "prepared/cars196", "--seed", "2"], tmp_path)
    assert r.returncode == 0, r.stderr
    m = read_manifest(tmp_path / "prepared" / "cars196")
    assert sorted(m.classes("test").tolist()) == mini.test_classes
    assert np.all([(m.image_root / p).is_file() for p in m.images])
    # an actionable error, not a traceback
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"inshop": {"files": [{"name": "img.zip"}]}}))
    r = _cli(["fetch", "inshop", "--out", "raw/inshop", "--sources", str(bad), "--no-progress"], tmp_path)
    assert r.returncode == 2
    assert "error:" in r.stderr and "list_eval_partition.txt" in r.stderr and "Traceback" not in r.stderr


def _fetch_cub_archive_from_a_mirror(server, archive: Path, route: str, raw: Path, download_dir: Path) -> None:
    """Fetch cub200 with `archive` (its true md5) served at `route` of the local HTTP server."""
    url = server.add(f"{route}/CUB_200_2011.tgz", archive)
    entry = {"name": "CUB_200_2011.tgz", "md5": md5(archive), "urls": [url]}
    get_dataset("cub200").fetch(raw, {"download_dir": str(download_dir), "files": [entry]}, progress=False)


def test_unsafe_archive_from_a_mirror_leaves_nothing(server, tmp_path):
    import io
    import tarfile

    evil = tmp_path / "CUB_200_2011.tgz"
    with tarfile.open(evil, "w:gz") as tf:
        for name in ("CUB_200_2011/images.txt", "../evil.txt"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tf.addfile(info, io.BytesIO(b"abc"))
    raw = tmp_path / "data" / "cub200"
    with pytest.raises(DataError, match="'../evil.txt'"):
        _fetch_cub_archive_from_a_mirror(server, evil, "/evil", raw, tmp_path / "dl")
    assert list((tmp_path / "data").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_leftovers_of_a_killed_fetch_are_removed(minis, server, tmp_path):
    from xbml.atomic import make_temp_dir

    raw = tmp_path / "raw" / "cub200"
    raw.parent.mkdir()
    # what a killed fetch leaves: the names its own mkdtemp calls make
    stale = [make_temp_dir(f".cub200{infix}", raw.parent) for infix in (".partial-", ".old-")]
    (stale[0] / "CUB_200_2011").mkdir()
    # look-alikes that no fetch made are not its to delete
    for name in (".cub200.partial-dead", ".cub200.old-backup-2024", ".cub2000.partial-abcd1234"):
        (raw.parent / name).mkdir()
    get_dataset("cub200").fetch(raw, sources_for(minis["cub200"], server, tmp_path), progress=False)
    assert sorted(p.name for p in raw.parent.iterdir()) == [
        ".cub200.old-backup-2024", ".cub200.partial-dead", ".cub2000.partial-abcd1234", "cub200"
    ]


# -- files without a checksum: refused by content, never recorded as fetched ------------------

HTML = b"<!DOCTYPE html><html><body>Sign in to continue to Google Drive</body></html>\n"


def _unverified_cars(mini: Miniature, server: FileServer, tmp: Path, annos_url: str) -> dict:
    sources = sources_for(mini, server, tmp)
    annos = sources["files"][1]
    assert annos["name"] == "cars_annos.mat"
    annos["md5"], annos["urls"] = None, [annos_url]
    return sources


def test_web_page_served_as_an_unverified_file_is_refused_and_retried(minis, server, tmp_path):
    ds, mini = get_dataset("cars196"), minis["cars196"]
    url = server.add("/flaky/cars_annos.mat", HTML)
    sources = _unverified_cars(mini, server, tmp_path, url)
    raw = tmp_path / "raw" / "cars196"
    with pytest.raises(DataError) as err:
        ds.fetch(raw, sources, progress=False)
    assert "cars_annos.mat" in str(err.value) and "web page" in str(err.value)
    assert not raw.parent.exists()
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == ["car_ims.tgz"]
    # the mirror recovers: the next fetch downloads it (it does not say "nothing to fetch")
    server.add("/flaky/cars_annos.mat", mini.files["cars_annos.mat"])
    ds.fetch(raw, sources, progress=False)
    assert md5(raw / "cars_annos.mat") == md5(mini.files["cars_annos.mat"])
    ds.prepare(raw, tmp_path / "prepared")


def test_unverified_file_that_does_not_parse_is_not_marked_fetched(minis, server, tmp_path):
    from scipy.io import savemat

    ds, mini = get_dataset("cars196"), minis["cars196"]
    other = tmp_path / "other.mat"
    savemat(other, {"class_names": np.array(["a", "b"], dtype=object)})  # a real MAT file, not the annotations
    url = server.add("/other/cars_annos.mat", other)
    sources = _unverified_cars(mini, server, tmp_path, url)
    raw = tmp_path / "raw" / "cars196"
    with pytest.raises(DataError, match="no `annotations` variable"):
        ds.fetch(raw, sources, progress=False)
    assert not raw.exists() and _leftovers(raw.parent) == []
    assert not (tmp_path / "downloads" / "cars_annos.mat").exists()  # deleted: the next fetch downloads again
    server.add("/other/cars_annos.mat", mini.files["cars_annos.mat"])
    ds.fetch(raw, sources, progress=False)
    ds.prepare(raw, tmp_path / "prepared")


def test_fetched_folder_whose_unverified_file_no_longer_parses_is_fetched_again(minis, server, tmp_path):
    ds, mini = get_dataset("cars196"), minis["cars196"]
    sources = _unverified_cars(mini, server, tmp_path, server.url("/cars196/cars_annos.mat"))
    raw = tmp_path / "raw" / "cars196"
    ds.fetch(raw, sources, progress=False)
    (raw / "cars_annos.mat").write_bytes(HTML)  # what an older version recorded as fetched
    r = _cli(["prepare", "cars196", "--raw", str(raw), "--out", str(tmp_path / "bad")], tmp_path)
    assert r.returncode == 2 and "cars_annos.mat is a web page" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()
    ds.fetch(raw, sources, progress=False)
    assert md5(raw / "cars_annos.mat") == md5(mini.files["cars_annos.mat"])
    ds.prepare(raw, tmp_path / "prepared")


@pytest.mark.parametrize("name", NAMES)
def test_fetch_without_any_checksum_accepts_the_real_formats(name, minis, server, tmp_path):
    mini = minis[name]
    sources = sources_for(mini, server, tmp_path, local=(name == "inshop"))
    for entry in sources["files"]:
        entry["md5"] = None
    raw = tmp_path / "raw"
    get_dataset(name).fetch(raw, sources, progress=False)
    get_dataset(name).prepare(raw, tmp_path / "prepared")


def test_local_unverified_web_page_is_refused_but_kept(minis, tmp_path):
    page = tmp_path / "img.zip"
    page.write_bytes(HTML)
    sources = {
        "files": [
            {"name": "img.zip", "local": str(page)},
            {"name": "list_eval_partition.txt", "local": str(minis["inshop"].files["list_eval_partition.txt"])},
        ]
    }
    with pytest.raises(DataError, match="img.zip.*web page.*left as it is"):
        get_dataset("inshop").fetch(tmp_path / "raw", sources, progress=False)
    assert page.read_bytes() == HTML and not (tmp_path / "raw").exists()


# -- prepare: bad raw data is a named DataError; nothing is written -----------------------------


def _fetched(name: str, minis, server, tmp_path) -> Path:
    raw = tmp_path / "raw" / name
    get_dataset(name).fetch(raw, sources_for(minis[name], server, tmp_path), progress=False)
    return raw


def test_raw_data_without_training_classes_is_a_named_error_in_the_cli(minis, server, tmp_path):
    raw = _fetched("cub200", minis, server, tmp_path)
    labels = raw / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text("".join(f"{line.split()[0]} 150\n" for line in labels.read_text().splitlines()))
    r = _cli(["prepare", "cub200", "--raw", str(raw), "--out", "prepared/cub200"], tmp_path)
    assert r.returncode == 2, r.stderr
    assert "none in the train partition" in r.stderr and "fetch again" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "prepared").exists()


# -- prepare: image paths that leave the raw folder ---------------------------------------------


def _point_first_image_at(name: str, raw: Path, path: str) -> str:
    """Rewrite the first image path of the annotations to `path`; returns 'file:line' of the change."""
    if name == "cars196":
        from scipy.io import loadmat, savemat

        mat = loadmat(raw / "cars_annos.mat")
        mat["annotations"][0, 0]["relative_im_path"] = np.array([path])
        savemat(raw / "cars_annos.mat", {"annotations": mat["annotations"]})
        return f"{raw / 'cars_annos.mat'}: annotation 0"
    file, line, column = {
        "cub200": ("CUB_200_2011/images.txt", 1, 1),
        "sop": ("Stanford_Online_Products/Ebay_train.txt", 2, 3),
        "inshop": ("Eval/list_eval_partition.txt", 3, 0),
    }[name]
    lines = (raw / file).read_text().splitlines()
    fields = lines[line - 1].split()
    fields[column] = path
    lines[line - 1] = " ".join(fields)
    (raw / file).write_text("\n".join(lines) + "\n")
    return f"{raw / file}:{line}"


@pytest.mark.parametrize("how", ["climbing", "absolute"])
@pytest.mark.parametrize("name", NAMES)
def test_image_path_that_leaves_the_raw_folder_is_refused_by_file_and_line(name, how, minis, server, tmp_path):
    ds = get_dataset(name)
    raw = _fetched(name, minis, server, tmp_path)
    secret = tmp_path / "outside" / "secret.jpg"
    secret.parent.mkdir()
    secret.write_bytes((next(ds.image_root(raw).rglob("*.jpg"), None) or next(raw.rglob("*.JPG"))).read_bytes())
    depth = len(ds.image_root(raw).relative_to(tmp_path).parts)
    path = "../" * depth + "outside/secret.jpg" if how == "climbing" else str(secret)
    assert (ds.image_root(raw) / path).resolve() == secret.resolve()  # it would have been accepted
    where = _point_first_image_at(name, raw, path)
    with pytest.raises(DataError) as err:
        ds.prepare(raw, tmp_path / "prepared")
    msg = str(err.value)
    assert where in msg and repr(path) in msg and "leaves the raw folder" in msg and "fetch again" in msg
    assert not (tmp_path / "prepared").exists()


def test_archive_whose_annotations_leave_the_raw_folder_is_never_marked_fetched(minis, server, tmp_path):
    import shutil
    import tarfile

    src = tmp_path / "src"
    shutil.copytree(minis["cub200"].extracted["CUB_200_2011.tgz"], src / "CUB_200_2011")
    _point_first_image_at("cub200", src, "../../../../outside/secret.jpg")
    evil = tmp_path / "CUB_200_2011.tgz"
    with tarfile.open(evil, "w:gz") as tf:
        tf.add(src / "CUB_200_2011", arcname="CUB_200_2011")
    raw = tmp_path / "data" / "cub200"
    with pytest.raises(DataError, match="images.txt:1: image path '../../../../outside/secret.jpg' leaves"):
        _fetch_cub_archive_from_a_mirror(server, evil, "/evil-annotations", raw, tmp_path / "dl")
    assert list(raw.parent.iterdir()) == []
