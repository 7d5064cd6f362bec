"""Cars196 (Stanford Cars, Krause et al. 2013): 196 car models, 16,185 images.

Protocol (MLRC): classes 1-98 train (8,054 images), 99-196 test (8,131).
cars_annos.mat holds a struct array `annotations` with the fields
relative_im_path (car_ims/000001.jpg), bbox_*, class and test; the `test` flag
is the classification split and is not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xbml.datasets.download import content_problem
from xbml.datasets.annotations import Annotations
from xbml.datasets.real_dataset import RealDataset
from xbml.datasets.registry import DATASETS
from xbml.datasets.sources import FileSpec
from xbml.errors import DataError

FIRST_TEST_CLASS = 99


@DATASETS.register("cars196")
class Cars196(RealDataset):
    name = "cars196"
    title = "Cars196"
    files = (  # checksums and mirrors: published_sources.yaml
        FileSpec("car_ims.tgz", top="car_ims"),
        FileSpec("cars_annos.mat", archive=False),
    )
    required = ("car_ims", "cars_annos.mat")
    expected_counts = {"train_images": 8054, "train_classes": 98, "test_images": 8131, "test_classes": 98}
    obtain_help = (
        "The Stanford host often answers 404: get car_ims.tgz and cars_annos.mat from a copy you trust "
        "(the checksums tell whether it is the published one) and set `local:` for each."
    )

    @classmethod
    def image_root(cls, raw_dir: Path) -> Path:
        return Path(raw_dir)

    @classmethod
    def read_annotations(cls, raw_dir: Path) -> Annotations:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError

        path = Path(raw_dir) / "cars_annos.mat"
        problem = content_problem(path) if path.is_file() else "is missing"
        if problem is not None:
            raise DataError(f"{path} {problem}; delete the raw folder and fetch again")
        try:
            mat = loadmat(path, squeeze_me=True, struct_as_record=False)
        # scipy reports a damaged file in many ways (an IndexError for a short one)
        except (OSError, ValueError, TypeError, IndexError, NotImplementedError, MatReadError) as exc:
            raise DataError(f"cannot read {path} ({exc}); delete the raw folder and fetch again") from None
        if "annotations" not in mat:
            raise DataError(f"{path} has no `annotations` variable; it is not the Cars196 annotation file")
        images: list[str] = []
        labels: list[int] = []
        for i, entry in enumerate(np.atleast_1d(mat["annotations"])):
            try:
                images.append(str(getattr(entry, "relative_im_path")).strip())
                labels.append(int(getattr(entry, "class")))
            except (AttributeError, TypeError, ValueError):
                raise DataError(
                    f"{path}: annotation {i} lacks the fields relative_im_path and class"
                ) from None
        y = np.array(labels, dtype=np.int64)
        partition = np.where(y >= FIRST_TEST_CLASS, "test", "train").astype(object)
        origins = [f"{path}: annotation {i}" for i in range(len(images))]
        return Annotations(images, y, partition, origins)
