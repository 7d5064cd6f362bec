"""CUB-200-2011 (Wah et al. 2011): 200 bird species, 11,788 images.

Protocol (MLRC): classes 1-100 train (5,864 images), 101-200 test (5,924).
The classification split in train_test_split.txt is not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xbml.datasets.annotations import Annotations, parse_int, read_rows
from xbml.datasets.real_dataset import RealDataset
from xbml.datasets.registry import DATASETS
from xbml.datasets.sources import FileSpec
from xbml.errors import DataError

FIRST_TEST_CLASS = 101


@DATASETS.register("cub200")
class Cub200(RealDataset):
    name = "cub200"
    title = "CUB-200-2011"
    files = (  # checksums and mirrors: published_sources.yaml
        FileSpec("CUB_200_2011.tgz", top="CUB_200_2011"),
    )
    required = ("CUB_200_2011/images.txt", "CUB_200_2011/image_class_labels.txt", "CUB_200_2011/images")
    expected_counts = {"train_images": 5864, "train_classes": 100, "test_images": 5924, "test_classes": 100}
    obtain_help = (
        "Download CUB_200_2011.tgz from https://data.caltech.edu/records/65de6-vp158 and set `local:` to it."
    )

    @classmethod
    def image_root(cls, raw_dir: Path) -> Path:
        return Path(raw_dir) / "CUB_200_2011" / "images"

    @classmethod
    def read_annotations(cls, raw_dir: Path) -> Annotations:
        base = Path(raw_dir) / "CUB_200_2011"
        paths: dict[int, str] = {}
        origins: dict[int, str] = {}
        for number, (image_id, path, *_) in read_rows(base / "images.txt", 2):
            key = parse_int(base / "images.txt", number, image_id)
            paths[key], origins[key] = path, f"{base / 'images.txt'}:{number}"
        labels: dict[int, int] = {}
        for number, (image_id, label, *_) in read_rows(base / "image_class_labels.txt", 2):
            f = base / "image_class_labels.txt"
            labels[parse_int(f, number, image_id)] = parse_int(f, number, label)
        if paths.keys() != labels.keys():
            only = sorted(paths.keys() ^ labels.keys())
            raise DataError(
                f"{cls.title}: images.txt and image_class_labels.txt list different image ids (e.g. {only[:5]})"
            )
        ids = sorted(paths)
        y = np.array([labels[i] for i in ids], dtype=np.int64)
        partition = np.where(y >= FIRST_TEST_CLASS, "test", "train").astype(object)
        return Annotations([paths[i] for i in ids], y, partition, [origins[i] for i in ids])
