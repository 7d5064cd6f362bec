"""The image array store of a prepared dataset (``dataset.json`` ``array_store``), read and checked.

The store must be a readable .npz whose ``images`` array is uint8, N x H x W for one channel or
N x H x W x C for C channels as ``dataset.json`` says, and long enough for every ``#<row>``
reference of the manifest. A truncated or empty file, a float array, RGB where one channel is
promised, or a reference past the end is refused here, with the file's name and the fix,
instead of failing as a zip, pickle or convolution error (or training silently on floats).
"""

from __future__ import annotations

import functools
import re
import zipfile
from pathlib import Path

import numpy as np

from xbml.errors import DataError

_REFERENCE = re.compile(r"#(\d{1,12})")


def _fix(path: Path) -> str:
    return f"re-run `xbml fetch` and `xbml prepare` for this dataset (or restore {path.name} from its DVC version)"


def load(path: Path, channels: int) -> np.ndarray:
    """The store's images, checked; one decompressed copy per process and file version."""
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise DataError(f"cannot read the image array store {path}: {exc.strerror}; {_fix(path)}") from None
    return _decompressed(path, stamp, channels)


@functools.lru_cache(maxsize=4)
def _decompressed(path: Path, stamp: int, channels: int) -> np.ndarray:
    # training and validation share the copy
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise DataError(f"image array store {path} is a bare .npy array, not an .npz archive; {_fix(path)}")
            if "images" not in z.files:
                raise DataError(f"image array store {path} holds no `images` array (it has {z.files[:5]}); {_fix(path)}")
            images = z["images"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise DataError(
            f"image array store {path} is damaged or not an .npz file ({type(exc).__name__}: {reason}); {_fix(path)}"
        ) from None
    check_images(images, path, channels)
    images.setflags(write=False)  # shared between datasets: nobody may modify it
    return images


def check_images(images, path: Path, channels: int) -> None:
    """dtype uint8 and the shape `dataset.json` promises (channels), at least one image."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        dtype = getattr(images, "dtype", type(images).__name__)
        raise DataError(
            f"image array store {path}: `images` is {dtype}, expected uint8 pixel values 0-255; {_fix(path)}"
        )
    expected = "N x H x W" if channels == 1 else f"N x H x W x {channels}"
    ok = (images.ndim == 3 and channels == 1) or (images.ndim == 4 and images.shape[3] == channels)
    if not ok:
        raise DataError(
            f"image array store {path}: `images` has shape {images.shape}, but dataset.json says {channels} "
            f"channel(s) ({expected}); {_fix(path)}"
        )
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"image array store {path} holds no images (shape {images.shape}); {_fix(path)}")


def store_indices(references: list[str], count: int, store: Path, manifest_csv: Path) -> np.ndarray:
    """The array rows behind `#<row>` references, each checked to exist in a store of `count` images."""
    out = np.empty(len(references), dtype=np.int64)
    for i, ref in enumerate(references):
        match = _REFERENCE.fullmatch(ref)
        if match is None:
            raise DataError(
                f"{manifest_csv}: image reference {ref[:40]!r} is not of the form #<row> an array store "
                f"needs; the manifest is damaged: re-run `xbml prepare`"
            )
        out[i] = int(match.group(1))
    if len(out) and out.max() >= count:
        bad = references[int(out.argmax())]
        raise DataError(
            f"{manifest_csv} refers to image {bad} but {store} holds only {count:,} images; the store and "
            "the manifest do not belong together (a truncated or replaced store?): re-run `xbml fetch` and `xbml prepare`"
        )
    return out
