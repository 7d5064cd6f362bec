"""Images of a manifest as tensors, with the protocol's augmentations.

Training items are (row, seed) pairs: each image's augmentation is drawn from
its own seed, so a batch is the same whether it is loaded in the main process
or a worker, first time or after a resume.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from xbml.datasets import array_store
from xbml.datasets.manifest import Manifest
from xbml.errors import DataError, XbmlError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ManifestImages(Dataset):
    def __init__(
        self,
        manifest: Manifest,
        rows: np.ndarray,
        targets: np.ndarray,
        image_size: int,
        resize: int = 256,
        train: bool = False,
        augment: bool = True,
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
            array_store.store_indices(
                [manifest.images[r] for r in self.rows.tolist()], len(self.images), self.store,
                manifest.root / "manifest.csv",
            )
        self._position = {int(r): i for i, r in enumerate(self.rows)}

    def __len__(self) -> int:
        return len(self.rows)

    # -- array store (embedded glyphs): already at size, small shifts only ------------------
    def _array_image(self, row: int, seed: int | None) -> torch.Tensor:
        ref = self.manifest.images[row]
        index = int(ref[1:])
        img = torch.from_numpy(self.images[index].astype(np.float32)).div_(255.0)  # a writable copy
        img = img.unsqueeze(0) if img.dim() == 2 else img.permute(2, 0, 1)
        if self.augment and seed is not None:
            g = torch.Generator().manual_seed(int(seed))
            pad = max(1, self.image_size // 16)
            padded = torch.nn.functional.pad(img, (pad, pad, pad, pad), value=float(img[:, 0, 0].mean()))
            dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=g).tolist()
            img = padded[:, dy : dy + img.shape[1], dx : dx + img.shape[2]]
        return (img - 0.5) / 0.5

    # -- image files (real datasets): the protocol's transforms ------------------------------
    def _file_image(self, row: int, seed: int | None) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError
        from torchvision.transforms import v2 as T

        path = self.manifest.image_root / self.manifest.images[row]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except FileNotFoundError:
            raise DataError(f"image file missing: {path}; re-run `xbml fetch` for this dataset") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"corrupt image file {path}: {exc}") from None
        if self.augment and seed is not None:
            ops = [T.RandomResizedCrop(self.image_size, scale=(0.16, 1.0), antialias=True), T.RandomHorizontalFlip()]
        else:
            ops = [T.Resize(self.resize, antialias=True), T.CenterCrop(self.image_size)]
        pipeline = T.Compose(
            [T.PILToTensor(), *ops, T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        )
        if seed is None:
            return pipeline(im)
        # torchvision draws from the global RNG: fork it so a seed decides this image alone
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return pipeline(im)

    def load(self, row: int, seed: int | None = None) -> torch.Tensor:
        if self.images is not None:
            return self._array_image(row, seed)
        return self._file_image(row, seed)

    def __getitem__(self, item):
        if isinstance(item, tuple):  # training: (manifest row, augmentation seed)
            row, seed = int(item[0]), int(item[1])
            return self.load(row, seed), int(self.targets[self._position[row]])
        row = int(self.rows[item])
        return self.load(row), int(self.targets[item])


class _BatchSchedule:
    """Batch sampler for DataLoader: the sampler's batches from `start` to `stop`."""

    def __init__(self, sampler, rows: np.ndarray, start: int, stop: int):
        self.sampler, self.rows, self.start, self.stop = sampler, rows, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        for i in range(self.start, self.stop):
            idx, seeds = self.sampler.batch(i)
            yield list(zip(self.rows[idx].tolist(), seeds.tolist()))


def training_batches(dataset: ManifestImages, sampler, start: int, stop: int, workers: int, pin_memory: bool):
    """Iterate (images, labels) for iterations [start, stop)."""
    schedule = _BatchSchedule(sampler, dataset.rows, start, stop)
    if workers == 0 and dataset.images is not None:
        # in-memory glyphs: a DataLoader would only add overhead
        def gen():
            for batch in schedule:
                items = [dataset[item] for item in batch]
                yield torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])

        return gen()
    return _OneLineErrors(DataLoader(
        dataset,
        batch_sampler=schedule,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    ))


def eval_batches(dataset: ManifestImages, batch_size: int, workers: int, pin_memory: bool):
    return _OneLineErrors(
        DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin_memory)
    )


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
