"""Append-only JSONL logs that are cut back to the checkpoint on resume."""

from __future__ import annotations

import json
from pathlib import Path

from xbml.os_errors import naming


class JsonlLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh = None

    def truncate_after(self, iteration: int) -> None:
        """Drop records of iterations a resumed run will redo."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn last line from a kill
            if record.get("iteration", 0) <= iteration:
                keep.append(line)
        with naming(self.path):
            self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, record: dict) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a")
        with naming(self.path):
            self._fh.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        if self._fh is not None:
            with naming(self.path):
                self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            with naming(self.path):
                fh.close()


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
