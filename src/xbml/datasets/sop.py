"""Stanford Online Products (Oh Song et al. 2016): 22,634 eBay products, 120,053 images.

Protocol: Ebay_train.txt (11,318 classes, 59,551 images) / Ebay_test.txt
(11,316 classes, 60,502 images); the label is the class_id column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xbml.datasets.annotations import Annotations, parse_int, read_rows
from xbml.datasets.real_dataset import RealDataset
from xbml.datasets.registry import DATASETS
from xbml.datasets.sources import FileSpec
from xbml.errors import DataError

HEADER = ["image_id", "class_id", "super_class_id", "path"]


@DATASETS.register("sop")
class StanfordOnlineProducts(RealDataset):
    name = "sop"
    title = "Stanford Online Products"
    files = (  # checksums and mirrors: published_sources.yaml
        FileSpec("Stanford_Online_Products.zip", top="Stanford_Online_Products"),
    )
    required = (
        "Stanford_Online_Products/Ebay_train.txt",
        "Stanford_Online_Products/Ebay_test.txt",
    )
    expected_counts = {"train_images": 59551, "train_classes": 11318, "test_images": 60502, "test_classes": 11316}
    obtain_help = (
        "Download Stanford_Online_Products.zip (see https://cvgl.stanford.edu/projects/lifted_struct/) "
        "and set `local:` to it."
    )

    @classmethod
    def image_root(cls, raw_dir: Path) -> Path:
        return Path(raw_dir) / "Stanford_Online_Products"

    @classmethod
    def read_annotations(cls, raw_dir: Path) -> Annotations:
        images: list[str] = []
        labels: list[int] = []
        partition: list[str] = []
        origins: list[str] = []
        for part in ("train", "test"):
            path = cls.image_root(raw_dir) / f"Ebay_{part}.txt"
            rows = read_rows(path, len(HEADER))
            first = next(rows, None)
            if first is None or first[1][: len(HEADER)] != HEADER:
                raise DataError(f"{path} must start with the header {' '.join(HEADER)}")
            for number, fields in rows:
                labels.append(parse_int(path, number, fields[1]))
                images.append(fields[3])
                partition.append(part)
                origins.append(f"{path}:{number}")
        return Annotations(images, np.array(labels, dtype=np.int64), np.array(partition, dtype=object), origins)
