"""The common dataset interface: a prepared dataset is a folder with

- ``manifest.csv``: one row per image with columns
  ``image`` (path relative to the image root, or ``#<row>`` into an array store),
  ``label`` (the dataset's own integer class id), ``split`` (train / val / test),
  ``role`` (``both`` when query = reference minus self; ``query`` / ``gallery``
  for protocols such as In-Shop) and ``fold`` (0-3 class-disjoint folds of the
  training classes, -1 elsewhere);
- ``dataset.json``: name, where the images are (``image_root`` folder or
  ``array_store`` .npz with an ``images`` uint8 array; a real dataset may also have an
  ``image_store``, its images decoded and resized once), channels and counts.

Training, embedding and evaluation read only this, so a new dataset only has
to write it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xbml.atomic import write_json, write_text
from xbml.errors import DataError

SPLITS = ("train", "val", "test")
ROLES = ("both", "query", "gallery")
COLUMNS = ("image", "label", "split", "role", "fold")


@dataclass
class Manifest:
    images: list[str]
    labels: np.ndarray
    splits: np.ndarray
    roles: np.ndarray
    folds: np.ndarray
    info: dict = field(default_factory=dict)
    root: Path | None = None

    def __len__(self) -> int:
        return len(self.images)

    def indices(self, split: str, max_classes: int = 0) -> np.ndarray:
        """Row indices of a split; `max_classes` keeps only its first N classes (sorted ids)."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        idx = np.flatnonzero(self.splits == split)
        if max_classes:
            keep = np.unique(self.labels[idx])[:max_classes]
            idx = idx[np.isin(self.labels[idx], keep)]
        return idx

    def fold_indices(self, split: str, fold: int | None, max_classes: int = 0) -> np.ndarray:
        """Row indices of a split as a cross-validation fold model sees it (MLRC's 4-fold
        protocol): with a fold, `train` is the training classes outside it and `val` its own
        classes; without one (or for `test`), the split itself."""
        if fold is None or split == "test":
            return self.indices(split, max_classes)
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        rows = self.indices("train", max_classes)
        folds = self.folds[rows]
        if int(fold) not in set(folds.tolist()):
            raise DataError(
                f"fold {fold} does not exist in {self.root}: its training classes form the folds "
                f"{sorted(set(folds.tolist()) - {-1})}; pick one of them (data.fold)"
            )
        return rows[folds == int(fold)] if split == "val" else rows[folds != int(fold)]

    def classes(self, split: str) -> np.ndarray:
        return np.unique(self.labels[self.splits == split])

    @property
    def image_root(self) -> Path | None:
        if self.root is None or "image_root" not in self.info:
            return None
        return (self.root / self.info["image_root"]).resolve()

    @property
    def array_store(self) -> Path | None:
        if self.root is None or "array_store" not in self.info:
            return None
        return (self.root / self.info["array_store"]).resolve()

    @property
    def image_store(self) -> Path | None:
        """The folder of the prepared uint8 image store of a real dataset (xbml.datasets.image_store)."""
        if self.root is None or "image_store" not in self.info:
            return None
        return (self.root / self.info["image_store"]).resolve()


def validate(m: Manifest) -> None:
    n = len(m.images)
    for name in ("labels", "splits", "roles", "folds"):
        if len(getattr(m, name)) != n:
            raise DataError(f"manifest column {name} has {len(getattr(m, name))} rows, expected {n}")
    bad = set(np.unique(m.splits)) - set(SPLITS)
    if bad:
        raise DataError(f"manifest has unknown splits {sorted(bad)}; valid: {', '.join(SPLITS)}")
    bad = set(np.unique(m.roles)) - set(ROLES)
    if bad:
        raise DataError(f"manifest has unknown roles {sorted(bad)}; valid: {', '.join(ROLES)}")
    # class-disjointness is the whole point of the protocol: check it, don't trust it
    seen: dict[str, set] = {s: set(np.unique(m.labels[m.splits == s]).tolist()) for s in SPLITS}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = seen[a] & seen[b]
        if shared:
            raise DataError(
                f"splits {a} and {b} share {len(shared)} classes (e.g. {sorted(shared)[:5]}); "
                "the protocol needs class-disjoint splits"
            )


def write_manifest(folder: str | Path, m: Manifest) -> None:
    validate(m)
    folder = Path(folder)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for row in zip(m.images, m.labels.tolist(), m.splits.tolist(), m.roles.tolist(), m.folds.tolist()):
        w.writerow(row)
    info = dict(m.info)
    info["counts"] = {
        s: {"images": int((m.splits == s).sum()), "classes": int(len(np.unique(m.labels[m.splits == s])))}
        for s in SPLITS
    }
    # dataset.json is written last: its presence marks a complete prepared folder
    write_text(folder / "manifest.csv", buf.getvalue())
    write_json(folder / "dataset.json", info)


def read_manifest(folder: str | Path) -> Manifest:
    folder = Path(folder)
    info_path, csv_path = folder / "dataset.json", folder / "manifest.csv"
    for p in (info_path, csv_path):
        if not p.exists():
            raise DataError(
                f"{p} is missing: {folder} is not a prepared dataset; run `python -m xbml prepare` first"
            )
    info = read_info(info_path)
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = tuple(next(reader, ()))
            if header != COLUMNS:
                raise DataError(f"{csv_path} has columns {str(header)[:120]}, expected {COLUMNS}; {_REPREPARE}")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path} is not a readable CSV file ({str(exc)[:120]}); {_REPREPARE}") from None
    try:
        m = Manifest(
            images=[r[0] for r in rows],
            labels=np.array([int(r[1]) for r in rows], dtype=np.int64),
            splits=np.array([r[2] for r in rows], dtype=object),
            roles=np.array([r[3] for r in rows], dtype=object),
            folds=np.array([int(r[4]) for r in rows], dtype=np.int64),
            info=info,
            root=folder.resolve(),
        )
    except (IndexError, ValueError) as exc:
        raise DataError(f"{csv_path} has a malformed row: {str(exc)[:120]}; {_REPREPARE}") from None
    validate(m)
    check_counts(m, csv_path, info_path)
    return m


_REPREPARE = "the prepared folder is damaged: re-run `xbml prepare` for this dataset"


def read_info(info_path: Path) -> dict:
    """dataset.json: a JSON object whose keys that say where the images are have the right types."""
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{info_path} is not valid JSON ({str(exc)[:120]}); {_REPREPARE}") from None
    if not isinstance(info, dict):
        raise DataError(f"{info_path} must hold a JSON object, not {type(info).__name__}; {_REPREPARE}")
    for key in ("image_root", "array_store"):
        if key in info and (not isinstance(info[key], str) or not info[key]):
            raise DataError(f"{info_path}: {key!r} must be a path, got {str(info[key])[:60]!r}; {_REPREPARE}")
    channels = info.get("channels", 3)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise DataError(f"{info_path}: 'channels' is {str(channels)[:20]!r}, expected 1 or 3; {_REPREPARE}")
    if "image_root" in info and channels != 3:
        raise DataError(f"{info_path}: image files are read as RGB, so 'channels' must be 3; {_REPREPARE}")
    return info


def check_counts(m: Manifest, csv_path: Path, info_path: Path) -> None:
    """The manifest's rows per split against the counts dataset.json recorded when both were written."""
    counts = m.info.get("counts")
    if not isinstance(counts, dict):
        return  # written by hand or by an older version: nothing promised
    for split in SPLITS:
        promised = counts.get(split, {}).get("images") if isinstance(counts.get(split), dict) else None
        if promised is None:
            continue
        actual = int((m.splits == split).sum())
        if actual != promised:
            raise DataError(
                f"{csv_path} lists {actual:,} {split} images but {info_path} promises {promised!r:.20}: "
                f"the two were not written together (a half-copied folder?); {_REPREPARE}"
            )


def carve_validation(train_classes: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Pick validation classes out of the training classes (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    classes = np.sort(np.asarray(train_classes))
    n_val = max(1, int(round(len(classes) * fraction))) if fraction > 0 else 0
    return np.sort(rng.choice(classes, size=n_val, replace=False)) if n_val else classes[:0]


def assign_folds(train_classes: np.ndarray, n_folds: int = 4) -> dict[int, int]:
    """Class-disjoint folds: contiguous blocks of the sorted class ids, as in MLRC."""
    classes = np.sort(np.asarray(train_classes))
    return {int(c): int(i * n_folds // len(classes)) for i, c in enumerate(classes)}


def split_classes(
    labels: np.ndarray,
    test_classes: np.ndarray,
    val_fraction: float,
    seed: int,
    n_folds: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (split, fold) per row for labels, given the protocol's test classes."""
    labels = np.asarray(labels)
    is_test = np.isin(labels, test_classes)
    train_classes = np.unique(labels[~is_test])
    val_classes = carve_validation(train_classes, val_fraction, seed)
    split = np.where(is_test, "test", np.where(np.isin(labels, val_classes), "val", "train")).astype(object)
    fit_classes = np.setdiff1d(train_classes, val_classes)
    folds = assign_folds(fit_classes, n_folds) if len(fit_classes) else {}
    fold = np.array([folds.get(int(c), -1) for c in labels], dtype=np.int64)
    return split, fold
