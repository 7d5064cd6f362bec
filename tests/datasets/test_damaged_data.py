"""Damaged prepared datasets as `xbml train` and `xbml embed` meet them: every input file checked
where it is read (type, shape, dtype, range, count against the manifest and dataset.json), one
line naming the file and the fix, from a DataLoader worker too."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import make_blob_dataset, tiny_train_overrides
from faults import cli, error_line
from xbml.config import load_config
from xbml.datasets.manifest import Manifest, split_classes, write_manifest
from xbml.training.trainer import train


def _train(capsys, prepared, out, *extra):
    args = ["train", "--out", out]
    for o in tiny_train_overrides(prepared, iterations=2) + list(extra):
        args += ["--set", o]
    return cli(capsys, *args)


def _store(prepared):
    with np.load(prepared / "store.npz") as z:
        return z["images"]


def _truncate(p):
    data = (p / "store.npz").read_bytes()
    (p / "store.npz").write_bytes(data[: len(data) // 2])


def _resave(p, **arrays):
    (p / "store.npz").unlink()
    np.savez(p / "store.npz", **arrays)


def _edit_manifest(p, old, new):
    text = (p / "manifest.csv").read_text()
    (p / "manifest.csv").write_text(text.replace(old, new, 1))


def _edit_info(p, text):
    (p / "dataset.json").write_text(text)


DAMAGE = {
    "truncated-store": (_truncate, ("store.npz", "damaged or not an .npz")),
    "empty-store": (lambda p: (p / "store.npz").write_bytes(b""), ("store.npz", "damaged or not an .npz")),
    "store-without-images": (lambda p: _resave(p, pixels=_store(p)), ("store.npz", "no `images` array")),
    "shorter-store": (lambda p: _resave(p, images=_store(p)[:50]), ("manifest.csv", "holds only 50 images")),
    "float64-store": (lambda p: _resave(p, images=_store(p).astype(np.float64)), ("store.npz", "float64", "uint8")),
    "rgb-for-one-channel": (
        lambda p: _resave(p, images=np.repeat(_store(p)[..., None], 3, axis=3)), ("store.npz", "1 channel(s)")
    ),
    "reference-not-a-row": (lambda p: _edit_manifest(p, "#3,", "#abc,"), ("manifest.csv", "'#abc'", "#<row>")),
    "reference-past-the-end": (lambda p: _edit_manifest(p, "#3,", "#999999,"), ("manifest.csv", "#999999")),
    "manifest-not-text": (lambda p: (p / "manifest.csv").write_bytes(b"\xff\xfe\x00garbage"), ("manifest.csv",)),
    "manifest-short-of-dataset-json": (
        lambda p: (p / "manifest.csv").write_text("".join((p / "manifest.csv").read_text().splitlines(True)[:-3])),
        ("manifest.csv", "promises", "dataset.json"),
    ),
    "dataset-json-not-json": (lambda p: _edit_info(p, "{name: blobs"), ("dataset.json", "not valid JSON")),
    "dataset-json-not-an-object": (lambda p: _edit_info(p, "[1, 2]"), ("dataset.json", "JSON object")),
    "dataset-json-bad-channels": (
        lambda p: _edit_info(p, json.dumps({**json.loads((p / "dataset.json").read_text()), "channels": "one"})),
        ("dataset.json", "'channels'"),
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_prepared_folder_is_named_with_the_fix(capsys, tmp_path, damage):
    prepared = make_blob_dataset(tmp_path / "prepared")
    spoil, fragments = DAMAGE[damage]
    spoil(prepared)
    code, err = _train(capsys, prepared, tmp_path / "run")
    line = error_line(code, err, *fragments)
    assert "re-run" in line or "xbml prepare" in line or "fetch" in line
    assert not (tmp_path / "run/model.pt").exists() and not (tmp_path / "run/checkpoints").exists()


def make_image_files_dataset(out, classes: int = 8, per_class: int = 4, corrupt: bool = False):
    """A prepared dataset of PNG files (image_root), optionally with bytes that are no image."""
    rng = np.random.default_rng(0)
    names, labels = [], []
    for c in range(classes):
        for i in range(per_class):
            path = out / "images" / f"c{c}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            if corrupt:
                path.write_bytes(b"not a png")
            else:
                Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).save(path)
            names.append(f"c{c}/{i}.png")
            labels.append(c)
    labels = np.array(labels)
    split, fold = split_classes(labels, np.arange(classes // 2, classes), 0.0, 0)
    info = {"name": "files", "image_root": "images", "channels": 3, "protocol": "self"}
    roles = np.array(["both"] * len(labels), dtype=object)
    write_manifest(out, Manifest(names, labels, split, roles, fold, info=info))
    return out


@pytest.mark.parametrize("workers", [0, 1])
def test_a_corrupt_image_reads_the_same_from_a_dataloader_worker(capsys, tmp_path, workers):
    prepared = make_image_files_dataset(tmp_path / "prepared", corrupt=True)
    code, err = _train(capsys, prepared, tmp_path / "run", f"data.workers={workers}", "sampler.classes_per_batch=4",
                       "data.resize=36")
    line = error_line(code, err, "corrupt image file", "prepared/images/c")
    assert "DataLoader worker" not in line


def test_embed_refuses_images_with_other_channels_than_the_model_and_a_bad_batch_size(capsys, tmp_path):
    blobs = make_blob_dataset(tmp_path / "blobs")
    train(load_config(None, tiny_train_overrides(blobs, iterations=2)), tmp_path / "run")
    rgb = make_image_files_dataset(tmp_path / "rgb")
    out = tmp_path / "emb.npz"
    code, err = cli(capsys, "embed", "--model", tmp_path / "run/model.pt", "--prepared", rgb, "--out", out,
                    "--no-progress")
    error_line(code, err, "3-channel images", "1-channel")
    with pytest.raises(SystemExit) as exit_info:  # argparse's own exit 2 and usage line
        cli(capsys, "embed", "--model", tmp_path / "run/model.pt", "--batch-size", "-1", "--out", out)
    assert exit_info.value.code == 2 and "positive integer" in capsys.readouterr().err
    assert not out.exists()
