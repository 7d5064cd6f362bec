"""What a published dataset's annotations say, in one form: image paths, integer labels and the
protocol's partition of every image, read from whitespace-separated text with errors that name
the file and line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from xbml.errors import DataError


@dataclass
class Annotations:
    images: list[str]
    labels: np.ndarray
    partition: np.ndarray
    # where each image is listed ("path:line"), for error messages; None: unknown
    origins: list[str] | None = None

    def origin(self, i: int) -> str:
        return self.origins[i] if self.origins is not None else f"image {i} of the annotations"


def read_rows(path: Path, columns: int, skip: int = 0) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a whitespace-separated text file; DataError on a short row."""
    if not path.is_file():
        raise DataError(f"annotation file {path} is missing; the raw folder is incomplete: delete it and fetch again")
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if number <= skip or not line.strip():
                continue
            fields = line.split()
            if len(fields) < columns:
                raise DataError(f"{path}:{number}: expected {columns} columns, got {line.strip()!r}")
            yield number, fields


def parse_int(path: Path, number: int, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{path}:{number}: {text!r} is not an integer") from None
