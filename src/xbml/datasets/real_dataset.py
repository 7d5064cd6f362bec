"""The shared fetch and prepare logic of the published datasets (CUB-200-2011, Cars196, SOP, In-Shop).

A dataset subclasses :class:`RealDataset`, declares its files (name, checksum,
mirrors), the layout they unpack to and the published counts, and implements
two hooks:

- ``read_annotations(raw_dir) -> Annotations``: its own annotation format ->
  image paths (relative to the image root), integer class ids and the protocol's
  partition of every image (``train`` / ``test``, or ``train`` / ``query`` /
  ``gallery``);
- ``image_root(raw_dir) -> Path``: the folder those image paths are relative to.

``fetch`` obtains every file (a ``local:`` copy or the mirrors in order),
verifies its checksum before unpacking anything (a file without a checksum must
pass a content check), assembles the raw folder in a temporary folder beside it,
checks that its annotations parse (:meth:`RealDataset.read_checked_annotations`)
and renames it into place with ``fetch.json`` (the checksums and the expected
counts) inside, so the raw folder exists only complete and readable. An
unverified download that does not make such a folder is deleted, so that the
next fetch downloads it again. ``prepare`` parses the annotations (every image
path must stay inside the raw folder), checks the counts against the published
ones (or the ``expected_counts`` recorded by fetch) and that every listed image
exists, and writes the common manifest.

The sources block of a dataset (config/datasets.yaml, see docs/datasets.md; its schema is
:meth:`RealDataset.sources_schema`)::

    cub200:
      download_dir: data/downloads         # optional; default: `downloads` beside the raw folder
      expected_counts: {train_images: 6}   # optional; replaces the published counts
      files:
        - name: CUB_200_2011.tgz
          md5: <hex digest>                # or sha256:; null: accept it unverified
          urls: [https://...]              # tried in order
          local: /data/CUB_200_2011.tgz    # optional; a downloaded file or extracted folder

The published checksums and mirrors are stated once, in the package's
published_sources.yaml: a file entry of a sources file (``--sources``) that gives no
checksum or no ``urls`` takes them from there.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import ClassVar

import numpy as np

from xbml.atomic import make_temp_dir, remove_stale_siblings, replace_dir, write_json
from xbml.datasets.annotations import Annotations
from xbml.datasets.archives import extract_into, is_absolute_path, resolve_inside
from xbml.datasets.base import Dataset
from xbml.datasets.links import check_inside
from xbml.datasets.download import (
    checksum_mismatch,
    content_message,
    content_problem,
    download,
    file_hash,
    mismatch_message,
)
from xbml.datasets.image_store import STORE_FOLDER, build_image_store
from xbml.datasets.manifest import Manifest, split_classes, write_manifest
from xbml.datasets.sources import FileSpec, Source, resolve_sources, sources_schema
from xbml.errors import DataError
from xbml.os_errors import naming

log = logging.getLogger(__name__)

MARKER = "fetch.json"
DOCS = "docs/datasets.md"


@dataclass
class Obtained:
    spec: FileSpec
    path: Path
    is_folder: bool
    record: dict = field(default_factory=dict)
    # a download without a checksum: deleted when it does not unpack into a readable raw folder
    discard_on_failure: bool = False


def _leaves(folder: str, path: str) -> bool:
    """Whether `path`, relative to `folder` (itself relative to the raw folder), points outside it."""
    parts = PurePosixPath(folder).parts + PurePosixPath(path.replace("\\", "/")).parts
    return is_absolute_path(path) or resolve_inside(parts) is None


def read_marker(raw_dir: str | os.PathLike) -> dict | None:
    path = Path(raw_dir) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RealDataset(Dataset):
    """Base class: subclasses declare their files and counts and implement the two hooks."""

    # "self": query = reference minus self; "query_gallery": separate query and gallery sets
    protocol: ClassVar[str] = "self"
    files: ClassVar[tuple[FileSpec, ...]] = ()
    # paths (relative to the raw folder) that must exist once every file is unpacked
    required: ClassVar[tuple[str, ...]] = ()
    # the published counts; keys from count_keys()
    expected_counts: ClassVar[dict[str, int]] = {}
    # how to obtain the files by hand (appended to the error when no source works)
    obtain_help: ClassVar[str] = ""

    # ---- the two hooks -------------------------------------------------------------------------

    @classmethod
    def read_annotations(cls, raw_dir: Path) -> Annotations:
        raise NotImplementedError

    @classmethod
    def image_root(cls, raw_dir: Path) -> Path:
        raise NotImplementedError

    # ---- counts --------------------------------------------------------------------------------

    @classmethod
    def partitions(cls) -> tuple[str, ...]:
        return ("train", "query", "gallery") if cls.protocol == "query_gallery" else ("train", "test")

    @classmethod
    def count_keys(cls) -> tuple[str, ...]:
        keys = [f"{p}_{what}" for p in cls.partitions() for what in ("images", "classes")]
        if cls.protocol == "query_gallery":
            keys += ["test_images", "test_classes"]
        return tuple(keys)

    @classmethod
    def counts(cls, ann: Annotations) -> dict[str, int]:
        out: dict[str, int] = {}
        groups = {p: ann.partition == p for p in cls.partitions()}
        if cls.protocol == "query_gallery":
            groups["test"] = groups["query"] | groups["gallery"]
        for p, mask in groups.items():
            out[f"{p}_images"] = int(mask.sum())
            out[f"{p}_classes"] = int(len(np.unique(ann.labels[mask])))
        return out

    # ---- sources -------------------------------------------------------------------------------

    @classmethod
    def sources_schema(cls) -> dict:
        return sources_schema(cls)

    @classmethod
    def resolve_sources(cls, sources: dict | None) -> tuple[list[Source], Path | None, dict[str, int]]:
        """(files, download_dir or None, expected counts) from a dataset's sources block."""
        return resolve_sources(cls, cls.check_sources(sources))

    @classmethod
    def _missing_source(cls, source: Source) -> DataError:
        msg = (
            f"{cls.title}: no source for {source.spec.name}: the sources file gives neither a `local:` path "
            f"nor a mirror URL for it (config/datasets.yaml, or the file passed with --sources, under "
            f"{cls.name}.files)."
        )
        if cls.obtain_help:
            msg += " " + cls.obtain_help
        msg += f" See {DOCS}."
        return DataError(msg)

    @classmethod
    def _obtain(cls, source: Source, download_dir: Path, progress: bool) -> Obtained:
        spec = source.spec
        if source.local is not None:
            path = source.local
            if not path.exists():
                raise DataError(
                    f"{cls.title}: the local path {path} given for {spec.name} does not exist. "
                    + (cls.obtain_help + " " if cls.obtain_help else "")
                    + f"See {DOCS}."
                )
            if path.is_dir():
                if (path / spec.name).is_file():
                    path = path / spec.name
                elif spec.archive and spec.top and (path.name == spec.top or (path / spec.top).is_dir()):
                    folder = path if path.name == spec.top else path / spec.top
                    log.info("%s: using the extracted folder %s (no checksum possible)", spec.name, folder)
                    return Obtained(spec, folder, True, {"source": f"local folder {folder.resolve()}"})
                else:
                    holds = f"{spec.top}/ or {spec.name}" if spec.archive and spec.top else spec.name
                    raise DataError(
                        f"{cls.title}: the local path {path} given for {spec.name} is a folder without {holds}"
                    )
            bad = checksum_mismatch(path, source.checksums)
            if bad is not None:
                raise DataError(mismatch_message(str(path), *bad, source="local:", deleted=False))
            problem = None if source.checksums else content_problem(path, spec.name)
            if problem is not None:
                raise DataError(content_message(str(path), problem, source=f"local: of {spec.name}", deleted=False))
            record = dict(source.checksums)
            if not source.checksums:
                record["sha256"] = file_hash(path)
                log.warning(
                    "%s: no checksum configured; using %s unverified (sha256 %s)", spec.name, path, record["sha256"]
                )
            record["source"] = f"local {path.resolve()}"
            return Obtained(spec, path, False, record)
        if source.urls:
            path = download(source.urls, download_dir / spec.name, source.checksums, progress=progress)
            record = dict(source.checksums) or {"sha256": file_hash(path)}
            record["source"] = "download"
            return Obtained(spec, path, False, record, discard_on_failure=not source.checksums)
        raise cls._missing_source(source)

    @classmethod
    def _install(cls, item: Obtained, staging: Path, progress: bool) -> None:
        dest = staging / item.spec.dest
        dest.mkdir(parents=True, exist_ok=True)
        if item.is_folder:
            log.info("%s: copying %s", cls.name, item.path)
            shutil.copytree(item.path, dest / (item.spec.top or item.path.name))
        elif item.spec.archive:
            log.info("%s: extracting %s", cls.name, item.path.name)
            extract_into(item.path, dest, progress=progress)
        else:
            shutil.copy2(item.path, dest / item.spec.name)

    @classmethod
    def _check_layout(cls, raw: Path) -> None:
        missing = [r for r in cls.required if not (raw / r).exists()]
        if missing:
            raise DataError(
                f"{cls.title}: after unpacking, {', '.join(missing)} is missing (expected: "
                f"{', '.join(cls.required)}); the files are not the published ones, or a `local:` folder "
                f"points at the wrong place. See {DOCS}."
            )

    @classmethod
    def _still_readable(cls, raw: Path, plan: list[Source]) -> bool:
        """Whether a raw folder that holds unverified files still parses (verified ones cannot change)."""
        if all(source.checksums for source in plan):
            return True
        try:
            cls.read_checked_annotations(raw)
        except DataError as exc:
            log.warning("%s: %s holds unverified files that do not parse (%s); fetching again", cls.name, raw, exc)
            return False
        return True

    @staticmethod
    def _discard_unverified(obtained: list[Obtained]) -> None:
        for item in obtained:
            if item.discard_on_failure and item.path.is_file():
                log.warning("%s: deleting the unverified download %s", item.spec.name, item.path)
                item.path.unlink()

    @staticmethod
    def _marker_matches(recorded: dict | None, name: str, plan: list[Source]) -> bool:
        if not recorded or recorded.get("dataset") != name:
            return False
        files = recorded.get("files") or {}
        for source in plan:
            rec = files.get(source.spec.name)
            if not isinstance(rec, dict):
                return False
            if any(rec.get(algo) != value for algo, value in source.checksums.items()):
                return False
        return True

    # ---- fetch ---------------------------------------------------------------------------------

    @classmethod
    def fetch(cls, raw_dir, sources: dict | None = None, seed: int = 0, progress: bool = True) -> None:
        """Make `raw_dir` hold the verified, unpacked raw files; a no-op when already there."""
        del seed  # the published datasets are not generated
        raw = Path(raw_dir)
        plan, download_dir, expected = cls.resolve_sources(sources)
        recorded = read_marker(raw)
        if raw.is_dir() and not any(raw.iterdir()):
            pass  # an empty folder (made by a workflow tool) is simply replaced
        elif raw.exists():
            if cls._marker_matches(recorded, cls.name, plan) and cls._still_readable(raw, plan):
                if recorded.get("expected_counts") != expected:
                    write_json(raw / MARKER, {**recorded, "expected_counts": expected})
                log.info("%s: %s is present and verified (%s matches); nothing to fetch", cls.name, raw, MARKER)
                return
            if recorded is None:
                raise DataError(
                    f"{raw} exists but has no valid {MARKER}: it was not written by `xbml fetch`. "
                    f"Move it away or delete it and fetch again, or, for a copy you unpacked yourself, "
                    f"point `local:` in the sources file at your files."
                )
            log.info("%s: the checksums in %s differ from the sources; fetching again", cls.name, raw / MARKER)
        download_dir = download_dir or raw.parent / "downloads"
        # every file verified before anything is unpacked
        obtained = [cls._obtain(source, download_dir, progress) for source in plan]
        raw.parent.mkdir(parents=True, exist_ok=True)
        # folders left by a fetch that was killed (one owner per raw folder: nobody else writes them)
        for infix in (".partial-", ".old-"):
            for stale in remove_stale_siblings(raw, infix):
                log.info("%s: removed %s, left by an interrupted fetch", cls.name, stale)
        staging = make_temp_dir(f".{raw.name}.partial-", raw.parent)
        try:
            with naming(raw):  # a full disk surfaces in a buffered write that names no file
                for item in obtained:
                    cls._install(item, staging, progress)
            cls._check_layout(staging)
            # a folder prepare could not read is never marked as fetched
            cls.read_checked_annotations(staging)
            # the marker goes in last; the folder appears under its real name only complete
            write_json(
                staging / MARKER,
                {
                    "dataset": cls.name,
                    "files": {item.spec.name: item.record for item in obtained},
                    "expected_counts": expected,
                },
            )
            replace_dir(staging, raw)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, DataError):
                cls._discard_unverified(obtained)
            raise
        log.info("%s: raw files ready in %s", cls.name, raw)

    # ---- prepare -------------------------------------------------------------------------------

    @classmethod
    def check_counts(cls, ann: Annotations, expected: dict[str, int], raw: Path) -> None:
        actual = cls.counts(ann)
        wrong = [
            f"{key} {actual[key]:,} (expected {value:,})"
            for key, value in expected.items()
            if key in actual and actual[key] != value
        ]
        if wrong:
            published = expected == cls.expected_counts
            raise DataError(
                f"{cls.title}: the raw data in {raw} does not have the "
                f"{'published' if published else 'expected'} counts: {'; '.join(wrong)}. "
                "The copy is incomplete or a different release: delete it and fetch again. "
                f"To use a variant knowingly, set `expected_counts:` under {cls.name} in the sources file "
                f"and fetch again (fetch records it in {MARKER})."
            )

    @classmethod
    def check_images(cls, root: Path, images: list[str]) -> None:
        missing = [p for p in images if not (root / p).is_file()]
        if missing:
            shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
            raise DataError(
                f"{cls.title}: {len(missing):,} of {len(images):,} listed images are missing under {root}: "
                f"{shown}. The raw folder is incomplete: delete it and fetch again."
            )

    @classmethod
    def check_paths(cls, raw: Path, ann: Annotations) -> None:
        """Refuse image paths that leave the raw folder (absolute, or climbing out with '..')."""
        folder = Path(os.path.relpath(cls.image_root(raw), raw)).as_posix()
        for i, path in enumerate(ann.images):
            if _leaves(folder, path):
                raise DataError(
                    f"{cls.title}: {ann.origin(i)}: image path {path!r} leaves the raw folder {raw} "
                    "(absolute, or climbing out with '..'); the annotations are damaged or not the published "
                    "ones: delete the raw folder and fetch again from a trusted source"
                )

    @classmethod
    def check_partitions(cls, ann: Annotations) -> None:
        """Every partition of the protocol present, nothing else, and test classes unseen in training."""
        partitions = cls.partitions()
        found = set(np.unique(ann.partition).tolist())
        bad = sorted(found - set(partitions))
        if bad:
            raise DataError(f"{cls.title}: unknown partition(s) {bad}; expected {', '.join(partitions)}")
        empty = [p for p in partitions if p not in found]
        if empty:
            raise DataError(
                f"{cls.title}: the annotations list {len(ann.images):,} images but none in the "
                f"{' and '.join(empty)} partition; the raw files are incomplete or not the published ones: "
                "delete the raw folder and fetch again"
            )
        is_train = ann.partition == "train"
        shared = np.intersect1d(ann.labels[is_train], ann.labels[~is_train])
        if len(shared):
            raise DataError(
                f"{cls.title}: {len(shared)} classes appear in both the training and the test partition "
                f"(e.g. {shared[:5].tolist()}); the protocol needs unseen test classes"
            )

    @classmethod
    def read_checked_annotations(cls, raw: Path) -> Annotations:
        """The annotations of `raw`, refused (DataError) unless prepare can build a manifest from them."""
        ann = cls.read_annotations(raw)
        cls.check_partitions(ann)
        cls.check_paths(raw, ann)
        return ann

    @classmethod
    def prepare(
        cls, raw_dir, out_dir, val_fraction: float = 0.2, seed: int = 0, image_store: int | None = None,
        progress: bool = False,
    ) -> None:
        """Parse the raw annotations, check them, and write manifest.csv + dataset.json into `out_dir`;
        with `image_store` (a short side in pixels) also the uint8 image store (xbml.datasets.image_store)."""
        raw, out = Path(raw_dir), Path(out_dir)
        cls.check_val_fraction(val_fraction)
        if not raw.is_dir():
            raise DataError(f"{raw} does not exist; run `python -m xbml fetch {cls.name} --out {raw}` first")
        recorded = read_marker(raw)
        if recorded is not None and isinstance(recorded.get("expected_counts"), dict):
            expected = recorded["expected_counts"]
        else:
            log.warning("%s: %s has no %s; checking against the published counts", cls.name, raw, MARKER)
            expected = dict(cls.expected_counts)
        ann = cls.read_checked_annotations(raw)
        is_train = ann.partition == "train"
        cls.check_counts(ann, expected, raw)
        root = cls.image_root(raw)
        cls.check_images(root, ann.images)
        # an image (or class folder) linked from elsewhere would escape the raw folder's DVC version
        rel_root = os.path.relpath(root, raw)
        check_inside(raw, [os.path.join(rel_root, p) for p in ann.images])
        test_classes = np.unique(ann.labels[~is_train])
        split, fold = split_classes(ann.labels, test_classes, val_fraction, seed)
        roles = np.where(np.isin(ann.partition, ("query", "gallery")), ann.partition, "both").astype(object)
        out.mkdir(parents=True, exist_ok=True)
        store_record = None
        if image_store:
            store_record = build_image_store(
                [root / p for p in ann.images], out / STORE_FOLDER, int(image_store), (recorded or {}).get("files"), progress
            )
        info = {
            "name": cls.name,
            "title": cls.title,
            "image_root": Path(os.path.relpath(root.resolve(), out.resolve())).as_posix(),
            "channels": 3,
            "protocol": cls.protocol,
            "val_fraction": val_fraction,
            "seed": seed,
        }
        if store_record is not None:
            info["image_store"] = STORE_FOLDER
            info["image_store_sha256"] = store_record["data_sha256"]
        write_manifest(
            out,
            Manifest(
                images=list(ann.images),
                labels=np.asarray(ann.labels, dtype=np.int64),
                splits=split,
                roles=roles,
                folds=fold,
                info=info,
            ),
        )
        log.info("%s: manifest of %d images written to %s", cls.name, len(ann.images), out)
