"""The prepared image store: every image of a real dataset decoded once, resized to a short side
(the evaluation resize, 256 by default) and kept as uint8, so a training job neither decodes
JPEGs nor reads more pixels than its crops need.

Images keep their aspect ratio, so the store is ragged: three files in the prepared folder

- ``images.u8``: the images' HWC uint8 bytes one after another, read memory-mapped (SOP's
  ~12 GB are never read into RAM; the page cache holds what is used);
- ``images.index.npy``: int64 rows (offset, stored height, stored width, original height,
  original width, crc32 of the image's bytes), one per manifest row;
- ``images.json``: format, short side, counts, library versions the pixels depend on, the raw
  data's identity (fetch.json checksums) and the sha256 of both files.

Checks: opening verifies the index's sha256 and the data file's size; every image read
verifies its own crc32, so a damaged byte anywhere an image is read from ends the job with a
message naming the file and the fix, at a cost of a fraction of the decode it replaces. The
data file's full sha256 is recorded (and checked by `prepare` before it reuses a store) for
versioning.

Pixels: written with the reference pipeline's own reader (PIL, convert RGB) and its own
evaluation resize (torchvision Resize(short side, antialias) on the uint8 tensor), so the
evaluation view (centre crop) of a store written at the evaluation resize equals the
reference's to the last bit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from xbml.errors import DataError

log = logging.getLogger(__name__)

STORE_FOLDER = "image_store"  # inside the prepared folder
DATA_NAME = "images.u8"
INDEX_NAME = "images.index.npy"
META_NAME = "images.json"
FORMAT = 1
INDEX_COLUMNS = ("offset", "height", "width", "original_height", "original_width", "crc32")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict:
    import PIL
    import torchvision

    return {"pillow": PIL.__version__, "torchvision": torchvision.__version__, "torch": torch.__version__}


def _rebuild_hint(folder: Path) -> str:
    return f"delete {folder} and run `python -m xbml prepare` with --image-store again"


def write_store(paths: list[Path], folder: Path, short_side: int, source: dict | None = None, progress: bool = False) -> dict:
    """Decode, resize and append every image of `paths` (manifest order) into `folder`; returns
    the record written to images.json. Files are written under temporary names and renamed last."""
    from tqdm import tqdm

    from xbml.datasets.fast_transforms import decode_pil, resize_short_side

    folder.mkdir(parents=True, exist_ok=True)
    tmp_data, tmp_index = folder / (DATA_NAME + ".partial"), folder / (INDEX_NAME + ".partial")
    index = np.zeros((len(paths), len(INDEX_COLUMNS)), dtype=np.int64)
    offset = 0
    digest = hashlib.sha256()
    try:
        with open(tmp_data, "wb") as out:
            for row, path in enumerate(tqdm(paths, desc="image store", unit="img", disable=not progress, mininterval=5)):
                image = decode_pil(path)
                stored = resize_short_side(image, short_side).permute(1, 2, 0).contiguous().numpy()
                data = stored.tobytes()
                out.write(data)
                digest.update(data)
                index[row] = (offset, stored.shape[0], stored.shape[1], image.shape[1], image.shape[2], zlib.crc32(data))
                offset += len(data)
            out.flush()
            os.fsync(out.fileno())
        with open(tmp_index, "wb") as f:
            np.save(f, index, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        record = {
            "format": FORMAT,
            "short_side": int(short_side),
            "count": len(paths),
            "bytes": offset,
            "layout": "HWC uint8 RGB, rows in manifest order",
            "index_columns": list(INDEX_COLUMNS),
            "resize": "PIL decode, convert RGB; torchvision.transforms.v2 Resize(short_side, antialias=True) on uint8",
            "versions": _versions(),
            "source": source or {},
            "data_sha256": digest.hexdigest(),
            "index_sha256": _file_sha256(tmp_index),
        }
        os.replace(tmp_data, folder / DATA_NAME)
        os.replace(tmp_index, folder / INDEX_NAME)
        (folder / META_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    except BaseException:
        for p in (tmp_data, tmp_index):
            p.unlink(missing_ok=True)
        raise
    log.info("image store: %d images, %.1f MB in %s", len(paths), offset / 1e6, folder / DATA_NAME)
    return record


def holds_store(folder: Path, short_side: int, count: int, source: dict | None) -> bool:
    """Whether `folder` holds an intact store of these images at this size (full sha256 check)."""
    try:
        meta = json.loads((folder / META_NAME).read_text())
    except (OSError, ValueError):
        return False
    if (meta.get("format"), meta.get("short_side"), meta.get("count")) != (FORMAT, short_side, count):
        return False
    if meta.get("source") != (source or {}) or meta.get("versions") != _versions():
        return False
    try:
        return (
            _file_sha256(folder / INDEX_NAME) == meta.get("index_sha256")
            and _file_sha256(folder / DATA_NAME) == meta.get("data_sha256")
        )
    except OSError:
        return False


def build_image_store(paths: list[Path], folder: Path, short_side: int, source: dict | None, progress: bool) -> dict:
    """The store of `paths` in `folder`: an intact one of the same images and size is kept."""
    if holds_store(folder, short_side, len(paths), source):
        log.info("image store in %s is intact and up to date; kept", folder)
        return json.loads((folder / META_NAME).read_text())
    return write_store(paths, folder, short_side, source, progress)


class ImageStore:
    """Read access to a store; picklable (each DataLoader worker maps the file itself)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.data_path = self.folder / DATA_NAME
        meta_path, index_path = self.folder / META_NAME, self.folder / INDEX_NAME
        try:
            self.meta = json.loads(meta_path.read_text())
            if _file_sha256(index_path) != self.meta.get("index_sha256"):
                raise DataError(
                    f"image store index {index_path} does not match the checksum in {meta_path}: the store is "
                    f"damaged; {_rebuild_hint(self.folder)}"
                )
            self.index = np.load(index_path, allow_pickle=False)
            size = self.data_path.stat().st_size
        except DataError:
            raise
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the image store in {self.folder}: {exc}; {_rebuild_hint(self.folder)}") from None
        if size != self.meta.get("bytes"):
            raise DataError(
                f"image store {self.data_path} has {size:,} bytes, {meta_path} records {self.meta.get('bytes'):,}: "
                f"the file is truncated or damaged; {_rebuild_hint(self.folder)}"
            )
        self.short_side = int(self.meta["short_side"])
        self._data: np.memmap | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_data"] = None  # each process maps the file itself
        return state

    def __len__(self) -> int:
        return len(self.index)

    def original_size(self, row: int) -> tuple[int, int]:
        return int(self.index[row, 3]), int(self.index[row, 4])

    def image(self, row: int) -> torch.Tensor:
        """uint8 (3, H, W) of manifest row `row`, checked against its crc32."""
        if self._data is None:
            self._data = np.memmap(self.data_path, dtype=np.uint8, mode="r")
        offset, h, w, _, _, crc = (int(v) for v in self.index[row])
        data = np.array(self._data[offset : offset + h * w * 3])  # one copy out of the page cache
        if zlib.crc32(data) != crc:
            raise DataError(
                f"image store {self.data_path} is damaged: image {row} (bytes {offset:,}-{offset + h * w * 3:,}) "
                f"does not match its checksum; {_rebuild_hint(self.folder)}"
            )
        return torch.from_numpy(data).view(h, w, 3).permute(2, 0, 1)
