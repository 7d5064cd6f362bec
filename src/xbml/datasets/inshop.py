"""In-Shop Clothes Retrieval (DeepFashion, Liu et al. 2016): 7,982 items, 52,712 images.

Protocol: Eval/list_eval_partition.txt marks every image train (3,997 items,
25,882 images), query (14,218) or gallery (12,612); test items are unseen in
training. The label is the item id (id_00000001 -> 1). There is no stable
download URL: the files come from the DeepFashion Google Drive folder and are
given to fetch with `local:` (see docs/datasets.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from xbml.datasets.annotations import Annotations, parse_int, read_rows
from xbml.datasets.real_dataset import RealDataset
from xbml.datasets.registry import DATASETS
from xbml.datasets.sources import FileSpec
from xbml.errors import DataError

HEADER = ["image_name", "item_id", "evaluation_status"]
STATUSES = ("train", "query", "gallery")
_ITEM = re.compile(r"id_(\d+)")


@DATASETS.register("inshop")
class InShop(RealDataset):
    name = "inshop"
    title = "In-Shop Clothes Retrieval"
    protocol = "query_gallery"
    files = (  # checksums and mirrors: published_sources.yaml
        FileSpec("img.zip", top="img"),
        FileSpec("list_eval_partition.txt", archive=False, dest="Eval"),
    )
    required = ("img", "Eval/list_eval_partition.txt")
    expected_counts = {
        "train_images": 25882,
        "train_classes": 3997,
        "query_images": 14218,
        "gallery_images": 12612,
        "test_classes": 3985,
    }
    obtain_help = (
        "In-Shop has no stable download URL. From the DeepFashion Google Drive folder "
        "'In-shop Clothes Retrieval Benchmark' (linked from "
        "https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html) download Img/img.zip "
        "(the low-resolution images; it unpacks to img/) and Eval/list_eval_partition.txt, then set under "
        "inshop.files in the sources file: `local:` of img.zip = the zip (or the folder it unpacks to, "
        "the one named img or the one holding img/), and `local:` of list_eval_partition.txt = that file."
    )

    @classmethod
    def image_root(cls, raw_dir: Path) -> Path:
        return Path(raw_dir)

    @classmethod
    def read_annotations(cls, raw_dir: Path) -> Annotations:
        path = Path(raw_dir) / "Eval" / "list_eval_partition.txt"
        rows = read_rows(path, 1)
        first = next(rows, None)
        header = next(rows, None)
        if first is None or header is None or header[1][:3] != HEADER:
            raise DataError(
                f"{path} must start with the image count and the header line {' '.join(HEADER)}"
            )
        declared = parse_int(path, first[0], first[1][0])
        images: list[str] = []
        labels: list[int] = []
        partition: list[str] = []
        origins: list[str] = []
        for number, fields in rows:
            if len(fields) < 3:
                raise DataError(f"{path}:{number}: expected image_name item_id evaluation_status")
            image, item, status = fields[:3]
            m = _ITEM.fullmatch(item)
            if not m:
                raise DataError(f"{path}:{number}: item id {item!r} does not look like id_00000001")
            if status not in STATUSES:
                raise DataError(f"{path}:{number}: evaluation_status {status!r} is not one of {', '.join(STATUSES)}")
            images.append(image)
            labels.append(int(m.group(1)))
            partition.append(status)
            origins.append(f"{path}:{number}")
        if declared != len(images):
            raise DataError(f"{path} declares {declared} images on its first line but lists {len(images)}")
        return Annotations(images, np.array(labels, dtype=np.int64), np.array(partition, dtype=object), origins)
