"""The array store: the images of a set of classes generated in parallel into arrays, and the
``glyphs.npz`` + ``glyphs.json`` pair that holds them reproducibly (same arrays -> same bytes).

``glyphs.npz`` holds ``images`` (uint8 N x H x W), ``labels`` (int64 code points) and ``fonts``
(int64 indices into the font list); ``glyphs.json`` records the parameters, the fonts, the
library versions rendering depends on and the checksums of the arrays and of the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from xbml.datasets.glyphs.fonts import DEFAULT_WORKERS, FontTable, worker_pool
from xbml.datasets.glyphs.render import render_image

log = logging.getLogger(__name__)

NPZ_NAME = "glyphs.npz"
JSON_NAME = "glyphs.json"
_CHUNK = 8  # classes per worker task


def _render_classes(task) -> tuple[np.ndarray, np.ndarray]:
    items, images_per_class, size, seed = task
    images = np.empty((len(items) * images_per_class, size, size), dtype=np.uint8)
    fonts = np.empty(len(items) * images_per_class, dtype=np.int64)
    k = 0
    for cp, font_codes in items:
        cache: dict = {}
        for index in range(images_per_class):
            images[k], fonts[k] = render_image(cp, font_codes, index, seed, size, cache)
            k += 1
    return images, fonts


def generate(
    classes,
    fonts: dict,
    images_per_class: int,
    image_size: int,
    seed: int,
    workers: int = DEFAULT_WORKERS,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, labels, fonts) for `classes` (code points) in the given order.

    `fonts` maps a code point to its ((font index, character code), ...). The result does not
    depend on `workers`: every image has its own seed.
    """
    from tqdm import tqdm

    classes = [int(c) for c in classes]
    tasks = [
        ([(cp, fonts[cp]) for cp in classes[i : i + _CHUNK]], images_per_class, image_size, seed)
        for i in range(0, len(classes), _CHUNK)
    ]
    n = len(classes) * images_per_class
    images = np.empty((n, image_size, image_size), dtype=np.uint8)
    font_index = np.empty(n, dtype=np.int64)
    labels = np.repeat(np.asarray(classes, dtype=np.int64), images_per_class)
    bar = tqdm(total=len(classes), desc="glyphs", unit="class", disable=not progress)
    try:
        with worker_pool(workers, len(tasks)) as run:
            k = 0
            for task, (imgs, fidx) in zip(tasks, run(_render_classes, tasks)):
                images[k : k + len(imgs)] = imgs
                font_index[k : k + len(imgs)] = fidx
                k += len(imgs)
                bar.update(len(task[0]))
    finally:
        bar.close()
    return images, labels, font_index


def arrays_sha256(images: np.ndarray, labels: np.ndarray, fonts: np.ndarray) -> str:
    h = hashlib.sha256()
    for name, arr in (("images", images), ("labels", labels), ("fonts", fonts)):
        arr = np.ascontiguousarray(arr)
        h.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed with fixed zip timestamps: same arrays -> same bytes (DVC-friendly)."""
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            # level 1: noisy images hardly compress better at 6, and it is twice as fast
            zf.writestr(info, buf.getbuffer(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)


def write_store(folder: Path, images, labels, fonts, meta: dict) -> None:
    """The npz and its record (`meta` plus the file's checksum) into `folder`, synced to disk."""
    write_npz(folder / NPZ_NAME, {"images": images, "labels": labels, "fonts": fonts})
    meta = {**meta, "file_sha256": file_sha256(folder / NPZ_NAME)}
    (folder / JSON_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    for p in folder.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())


def metadata(params: dict, table: FontTable, usable_classes: int, classes, images, labels, fonts) -> dict:
    import matplotlib
    import PIL
    from PIL import features

    return {
        "name": "glyphs",
        "params": params,
        "fonts": list(table.names),
        "num_classes": len(classes),
        "num_images": int(len(labels)),
        "image_shape": list(images.shape[1:]),
        "code_points": [int(c) for c in classes],
        "usable_classes": usable_classes,
        "arrays_sha256": arrays_sha256(images, labels, fonts),
        "file": NPZ_NAME,
        # rendering depends on these: same versions + same params -> same bytes
        "environment": {
            "matplotlib": matplotlib.__version__,
            "pillow": PIL.__version__,
            "freetype": features.version("freetype2"),
            "numpy": np.__version__,
        },
    }


def holds_store(folder: Path, params: dict, font_names: list[str]) -> bool:
    """True when `folder` holds an intact store generated with exactly these parameters and fonts."""
    meta_path, npz_path = folder / JSON_NAME, folder / NPZ_NAME
    if not (meta_path.is_file() and npz_path.is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    if meta.get("params") != params or meta.get("fonts") != font_names:
        return False
    if meta.get("file_sha256") != file_sha256(npz_path):
        log.warning("%s does not match the checksum in %s; generating it again", npz_path, meta_path)
        return False
    return True
