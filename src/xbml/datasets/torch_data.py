"""Images of a manifest as tensors, with the protocol's augmentations.

Training items are (row, seed) pairs: each image's augmentation is drawn from
its own seed, so a batch is the same whether it is loaded in the main process
or a worker, first time or after a resume.

Images leave the loader as uint8 batches (channels_last when the model is), in pinned memory
when the model is on a GPU, from persistent workers; conversion to float and the backbone's
normalisation happen on the device (xbml.models.input_normalisation).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from xbml.datasets import array_store
from xbml.datasets import fast_transforms as ft
from xbml.datasets.array_shift import shift_draws, shifted
from xbml.datasets.device_decode import EncodedImage, collate, encode, image_size_of
from xbml.datasets.image_store import ImageStore
from xbml.datasets.manifest import Manifest
from xbml.errors import DataError, XbmlError


IMAGE_SOURCES = ("auto", "store", "original")


class ManifestImages(Dataset):
    """Items of a manifest, uint8 (C, size, size): glyphs from their array store, real images from
    the prepared image store or the original files; the model's `DeviceNormalisation` converts
    them on the device. With `decode_on_device` a real image leaves as its JPEG bytes and crop
    box (`EncodedImage`) and is decoded with its batch."""

    def __init__(
        self,
        manifest: Manifest,
        rows: np.ndarray,
        targets: np.ndarray,
        image_size: int,
        resize: int = 256,
        train: bool = False,
        augment: bool = True,
        image_source: str = "auto",
        decode_on_device: bool = False,
    ):
        self.manifest = manifest
        self.rows = np.asarray(rows)
        self.targets = np.asarray(targets)
        self.image_size = image_size
        self.resize = resize
        self.train = train
        self.augment = augment and train
        self.store = manifest.array_store
        self.channels = int(manifest.info.get("channels", 3))
        self.images = array_store.load(self.store, self.channels) if self.store is not None else None
        if self.images is None and manifest.image_root is None:
            raise DataError(f"{manifest.root}/dataset.json names neither image_root nor array_store")
        if self.images is not None:  # every reference checked once here, not as an IndexError mid-run
            self._store_index = np.full(len(manifest), -1, dtype=np.int64)
            self._store_index[self.rows] = array_store.store_indices(
                [manifest.images[r] for r in self.rows.tolist()], len(self.images), self.store,
                manifest.root / "manifest.csv",
            )
        self.image_store = open_image_store(manifest, image_source) if self.images is None else None
        self.decode_on_device = bool(decode_on_device) and self.images is None and self.image_store is None
        self._position = {int(r): i for i, r in enumerate(self.rows)}

    def targets_of(self, rows: np.ndarray) -> np.ndarray:
        """The targets of manifest rows of this set."""
        return self.targets[[self._position[int(r)] for r in rows]]

    def __len__(self) -> int:
        return len(self.rows)

    # -- array store (embedded glyphs): already at size, small shifts only ------------------
    def array_batch(self, rows: np.ndarray, seeds: np.ndarray | None = None) -> torch.Tensor:
        """uint8 (B, C, H, W) of manifest rows; with seeds (training), each shifted by up to H/16
        pixels as its seed decides (xbml.datasets.array_shift)."""
        images = self.images[self._store_index[np.asarray(rows, dtype=np.int64)]]
        images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        if self.augment and seeds is not None:
            pad = max(1, self.image_size // 16)
            images = shifted(images, *shift_draws(seeds, pad), pad)
        else:
            images = images.copy()  # the store may be read-only (memory-mapped)
        return torch.from_numpy(images)

    def _array_image(self, row: int, seed: int | None) -> torch.Tensor:
        """uint8 (C, H, W): one image of `array_batch`."""
        return self.array_batch(np.array([row]), None if seed is None else np.array([seed]))[0]

    # -- real images: the protocol's transforms on uint8 ------------------------------------
    def _store_image(self, row: int, seed: int | None) -> torch.Tensor:
        image = self.image_store.image(row)
        if self.augment and seed is not None:
            original = self.image_store.original_size(row)
            # the box is drawn on the original's size: the same region as from the JPEG
            aug = ft.scale_box(ft.draw_augmentation(seed, *original), original, tuple(image.shape[1:]))
            return ft.augmented_crop(image, aug, self.image_size)
        if self.image_store.short_side == self.resize:
            return ft.centre_crop(image, self.image_size)  # the store holds the evaluation resize
        return ft.eval_view(image, self.resize, self.image_size)

    def _file_image(self, row: int, seed: int | None) -> torch.Tensor:
        image = ft.decode(self.manifest.image_root / self.manifest.images[row])
        if self.augment and seed is not None:
            return ft.augmented_crop(image, ft.draw_augmentation(seed, *image.shape[1:]), self.image_size)
        return ft.eval_view(image, self.resize, self.image_size)

    def _encoded_image(self, row: int, seed: int | None) -> EncodedImage:
        path = self.manifest.image_root / self.manifest.images[row]
        aug = None
        if self.augment and seed is not None:
            aug = ft.draw_augmentation(seed, *image_size_of(path))
        return encode(path, aug, self.image_size, self.resize)

    def load(self, row: int, seed: int | None = None):
        if self.images is not None:
            return self._array_image(row, seed)
        if self.image_store is not None:
            return self._store_image(row, seed)
        if self.decode_on_device:
            return self._encoded_image(row, seed)
        return self._file_image(row, seed)

    def __getitem__(self, item):
        if isinstance(item, tuple):  # training: (manifest row, augmentation seed)
            row, seed = int(item[0]), int(item[1])
            return self.load(row, seed), int(self.targets[self._position[row]])
        row = int(self.rows[item])
        return self.load(row), int(self.targets[item])


def open_image_store(manifest: Manifest, image_source: str) -> ImageStore | None:
    """The prepared image store when the manifest has one and `image_source` allows it."""
    if image_source not in IMAGE_SOURCES:
        raise DataError(f"data.image_source is {image_source!r}; valid values: {', '.join(IMAGE_SOURCES)}")
    folder = manifest.image_store
    if image_source == "original" or (folder is None and image_source == "auto"):
        return None
    if folder is None:
        raise DataError(
            f"data.image_source is 'store' but {manifest.root} has no image store; run `python -m xbml prepare` "
            "with --image-store (or `image_store:` in the dataset's block of config.yaml), or use 'auto'"
        )
    store = ImageStore(folder)
    if len(store) != len(manifest):
        raise DataError(
            f"the image store in {folder} holds {len(store):,} images but the manifest lists {len(manifest):,}; "
            "prepare the dataset again"
        )
    return store


class _BatchSchedule:
    """Batch sampler for DataLoader: the sampler's batches from `start` to `stop`."""

    def __init__(self, sampler, rows: np.ndarray, start: int, stop: int):
        self.sampler, self.rows, self.start, self.stop = sampler, rows, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def arrays(self):
        """(manifest rows, augmentation seeds) of each batch."""
        for i in range(self.start, self.stop):
            idx, seeds = self.sampler.batch(i)
            yield self.rows[idx], seeds

    def __iter__(self):
        for rows, seeds in self.arrays():
            yield list(zip(rows.tolist(), seeds.tolist()))


def training_batches(
    dataset: ManifestImages, sampler, start: int, stop: int, workers: int, pin_memory: bool, channels_last: bool = False
):
    """Iterate (images, labels) for iterations [start, stop)."""
    schedule = _BatchSchedule(sampler, dataset.rows, start, stop)
    if workers == 0 and dataset.images is not None:
        # in-memory glyphs: a DataLoader would only add overhead, and the batch is shifted at once
        def gen():
            for rows, seeds in schedule.arrays():
                yield dataset.array_batch(rows, seeds), torch.from_numpy(dataset.targets_of(rows).astype(np.int64))

        return gen()
    return _OneLineErrors(DataLoader(
        dataset,
        batch_sampler=schedule,
        num_workers=workers,
        collate_fn=functools.partial(collate, channels_last=channels_last),
        pin_memory=pin_memory,
        # one pass over the whole schedule: the workers live as long as the run
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    ))


def eval_batches(dataset: ManifestImages, batch_size: int, workers: int, pin_memory: bool, channels_last: bool = False):
    return _OneLineErrors(DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=functools.partial(collate, channels_last=channels_last),
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
    ))


def worker_message(text: str) -> str:
    """The message a DataLoader worker raised, without the "Original Traceback" torch wraps
    around it in the main process."""
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    kind, sep, message = last.partition(": ")
    return message if sep and kind.startswith("xbml.errors.") else last


class _OneLineErrors:
    """A DataLoader whose workers' xbml errors reach the user as the same one line as in-process."""

    def __init__(self, loader: DataLoader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        try:
            yield from self.loader
        except XbmlError as exc:
            raise type(exc)(worker_message(str(exc))) from None
