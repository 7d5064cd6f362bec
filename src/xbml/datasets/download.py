"""Download a file over HTTP(S): mirrors in order, resume through Range, checksum before use.

``download(urls, dest, checksums)`` leaves ``dest`` only when the complete file
verifies. While it runs, the bytes go to ``dest + ".part"``; a connection that
breaks mid-file is retried on the same mirror from where it stopped (an HTTP
``Range`` request), and a ``.part`` left by an interrupted run is resumed the
same way. A mirror that answers 404 (or any HTTP error) or cannot be reached is
logged and the next one is tried. A file whose checksum is wrong is deleted and
refused with a :class:`~xbml.errors.DataError` that names the file, the expected
and the actual hash.

Without a checksum the content is still judged (:func:`content_problem`): a web
page, text where an archive or a ``.mat`` file is expected, or an archive that
does not open as its format is deleted and refused like a wrong checksum, and a
kept copy that fails the same test is downloaded again.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Iterable, Mapping

from xbml.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# hash algorithms a sources entry may name, strongest first
ALGORITHMS = ("sha256", "md5")
CHUNK = 1 << 20
USER_AGENT = "xbml-fetch/0.1 (python urllib)"
# attempts per mirror when a connection breaks mid-file (each resumes), and the pause between them
ATTEMPTS = 4
RETRY_PAUSE_S = 0.5

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class _Interrupted(Exception):
    """The transfer stopped before the end; retrying the same mirror may resume it."""


def normalize_checksums(checksums: Mapping[str, str | None] | None, what: str = "file") -> dict[str, str]:
    """{'md5': 'ABC..'} -> {'md5': 'abc..'}; rejects unknown algorithms and malformed digests."""
    out: dict[str, str] = {}
    for algo, value in (checksums or {}).items():
        if value is None or value == "":
            continue
        if algo not in ALGORITHMS:
            raise ConfigError(f"{what}: unknown checksum algorithm {algo!r}; valid: {', '.join(ALGORITHMS)}")
        value = str(value).strip().lower()
        size = hashlib.new(algo).digest_size * 2
        if not re.fullmatch(rf"[0-9a-f]{{{size}}}", value):
            raise ConfigError(f"{what}: {algo} must be {size} hexadecimal digits, got {value!r}")
        out[algo] = value
    return out


def file_hashes(path: str | os.PathLike, algorithms: Iterable[str] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file, reading it once for all algorithms."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    return file_hashes(path, (algorithm,))[algorithm]


def checksum_mismatch(path: Path, checksums: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(algorithm, expected, actual) of the first checksum that does not match, or None."""
    if not checksums:
        return None
    actual = file_hashes(path, checksums.keys())
    for algo, expected in checksums.items():
        if actual[algo] != expected:
            return algo, expected, actual[algo]
    return None


# what a file's name promises about its content
_TAR_SUFFIXES = (".tgz", ".tar", ".tar.gz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_BINARY_SUFFIXES = _TAR_SUFFIXES + (".zip", ".mat")
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")


def _head(path: Path, size: int = 512) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError:
        return b""


def _looks_like_html(path: Path) -> bool:
    return _head(path).lstrip().lower().startswith(_HTML_STARTS)


def _looks_like_text(head: bytes) -> bool:
    # an archive or a MAT file has NUL or high bytes within its first 512; a page or a message has none
    return bool(head) and b"\0" not in head and all(b in b"\t\n\r\f" or 32 <= b < 127 for b in head)


def _opens_as_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error, tarfile.TarError):
        return False


def content_problem(path: str | os.PathLike, name: str | None = None) -> str | None:
    """Why `path` cannot be the file `name` (default: its own name) judged by its content; None if plausible.

    For files that come without a checksum: catches the login, quota and error pages
    that mirrors serve with HTTP 200, and files cut short or of another format.
    """
    path = Path(path)
    name = (name or path.name).lower()
    head = _head(path)
    if not head:
        return "is empty"
    if _looks_like_html(path):
        return "is a web page (HTML), not the file: a login, quota, confirmation or error page"
    if name.endswith(_BINARY_SUFFIXES) and _looks_like_text(head):
        return f"is text, not the binary {Path(name).suffix} file expected"
    if name.endswith(_TAR_SUFFIXES) and not _opens_as_tar(path):
        return "does not open as a tar archive (damaged, cut short or another format)"
    if name.endswith(".zip") and not zipfile.is_zipfile(path):
        return "does not open as a zip archive (damaged, cut short or another format)"
    if name.endswith(".mat") and not head.startswith(b"MATLAB"):
        return "has no MATLAB header: it is not a .mat file"
    return None


def content_message(name: str, problem: str, source: str, deleted: bool) -> str:
    if deleted:
        msg = (
            f"{name} (from {source}) {problem}. It was deleted and not recorded as fetched. Try another "
            "mirror (list it first under `urls:` in the sources file, config/datasets.yaml) or download "
            "the file yourself and set `local:` to it"
        )
    else:
        msg = f"{name} (given as {source}) {problem}. The file was left as it is. Point `local:` at the published file"
    return msg + "; give its checksum (md5 or sha256) in the sources file so that a wrong file is always refused."


def mismatch_message(name: str, algo: str, expected: str, actual: str, source: str, deleted: bool) -> str:
    msg = (
        f"checksum of {name} is wrong: {algo} expected {expected}, got {actual} (from {source}). "
    )
    msg += "The bad file was deleted. " if deleted else "The file was left as it is. "
    msg += (
        "The download was damaged or the source serves a different version: fetch again, "
        "try another mirror (list it first under `urls:` in the sources file, config/datasets.yaml), "
        "or, if you have checked that this version is the one you want, put its checksum in the sources file."
    )
    return msg


def _opener() -> urllib.request.OpenerDirector:
    # the default handlers: proxies from the environment, redirects (Range is kept on redirect)
    return urllib.request.build_opener()


def _progress_bar(total: int | None, initial: int, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        disable=not enabled,
        leave=False,
    )


def _transfer(url: str, part: Path, name: str, progress: bool, timeout: float) -> None:
    """One request: append to (or restart) `part`; returns when the server's body is complete."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = _opener().open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # nothing past `offset`: either the .part is already complete or it is stale
            content_range = exc.headers.get("Content-Range", "") if exc.headers else ""
            exc.close()
            m = re.fullmatch(r"bytes\s+\*/(\d+)", content_range.strip())
            if m and int(m.group(1)) == offset:
                return
            log.info("%s: the partial download does not fit %s; starting over", name, url)
            part.unlink()
            raise _Interrupted("range not satisfiable") from None
        raise
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset and status == 206:
            m = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
            if not m or int(m.group(1)) != offset:
                log.info("%s: %s answered an unexpected range; starting over", name, url)
                part.unlink()
                raise _Interrupted("unexpected Content-Range")
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
            log.info("%s: resuming at byte %d from %s", name, offset, url)
        else:
            if offset:
                log.info("%s: %s does not resume downloads (HTTP %d); starting over", name, url, status)
            offset, total, mode = 0, length, "wb"
        received = 0
        with open(part, mode) as f, _progress_bar(total, offset, name, progress) as bar:
            while True:
                try:
                    block = response.read(CHUNK)
                except (http.client.HTTPException, OSError) as exc:
                    raise _Interrupted(f"connection lost after {offset + received} bytes: {exc}") from None
                if not block:
                    break
                f.write(block)
                received += len(block)
                bar.update(len(block))
    if length is not None and received < length:
        raise _Interrupted(f"connection closed after {offset + received} of {offset + length} bytes")


def download(
    urls: Iterable[str],
    dest: str | os.PathLike,
    checksums: Mapping[str, str] | None = None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
    attempts: int = ATTEMPTS,
) -> Path:
    """Make `dest` hold the verified file, trying `urls` in order; returns `dest`.

    An existing `dest` that verifies is kept without any request. Raises DataError
    when no mirror delivered a file with the expected checksum (without one: a file
    that passes :func:`content_problem`).
    """
    dest = Path(dest)
    name = dest.name
    checksums = normalize_checksums(checksums, name)
    urls = [u for u in urls if u]
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        bad = checksum_mismatch(dest, checksums)
        problem = None if checksums else content_problem(dest)
        if bad is None and problem is None:
            log.info("%s: using the %s copy in %s", name, "verified" if checksums else "unverified", dest.parent)
            return dest
        why = f"{bad[0]} {bad[2]}" if bad else problem
        log.warning("%s: the copy in %s does not verify (%s); downloading again", name, dest.parent, why)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    failures: list[str] = []
    mismatch: str | None = None
    for url in urls:
        scheme = url.split(":", 1)[0].lower()
        if scheme not in ("http", "https"):
            failures.append(f"{url}: only http(s) URLs are supported")
            log.warning("%s: skipping %s (only http and https URLs are supported)", name, url)
            continue
        done = False
        for attempt in range(1, attempts + 1):
            try:
                _transfer(url, part, name, progress, timeout)
                done = True
                break
            except urllib.error.HTTPError as exc:
                failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
                log.warning("%s: %s answered HTTP %d %s; trying the next mirror", name, url, exc.code, exc.reason)
                exc.close()
                break
            except urllib.error.URLError as exc:
                failures.append(f"{url}: {exc.reason}")
                log.warning("%s: cannot reach %s (%s); trying the next mirror", name, url, exc.reason)
                break
            except (_Interrupted, http.client.HTTPException, socket.timeout, ConnectionError) as exc:
                kept = part.stat().st_size if part.exists() else 0
                if attempt == attempts:
                    failures.append(f"{url}: {exc} ({attempts} attempts)")
                    log.warning("%s: %s failed %d times (%s); trying the next mirror", name, url, attempts, exc)
                else:
                    log.warning("%s: %s (%s); retrying from byte %d", name, url, exc, kept)
                    time.sleep(RETRY_PAUSE_S * attempt)
        if not done:
            continue
        bad = checksum_mismatch(part, checksums)
        if bad is not None:
            html = _looks_like_html(part)
            part.unlink()
            mismatch = mismatch_message(name, *bad, source=url, deleted=True)
            if html:
                mismatch += " (The mirror sent a web page, not the file: a login, quota or confirmation page.)"
            failures.append(f"{url}: wrong {bad[0]} {bad[2]}")
            log.warning("%s: %s delivered a file with the wrong %s; trying the next mirror", name, url, bad[0])
            continue
        problem = None if checksums else content_problem(part, name)
        if problem is not None:
            part.unlink()
            mismatch = content_message(name, problem, source=url, deleted=True)
            failures.append(f"{url}: {problem}")
            log.warning("%s: %s delivered a file that %s; trying the next mirror", name, url, problem)
            continue
        if not checksums:
            log.warning(
                "%s: no checksum configured, accepted unverified (sha256 %s); add it to the sources file",
                name,
                file_hash(part),
            )
        os.replace(part, dest)
        return dest
    if mismatch is not None:
        raise DataError(mismatch + " Mirrors tried: " + "; ".join(failures))
    if not urls:
        raise DataError(f"{name}: no download URL configured; add mirrors under `urls:` in the sources file")
    kept = f" The partial download {part} is kept; the next fetch resumes it." if part.exists() else ""
    raise DataError(
        f"could not download {name}: every mirror failed ({'; '.join(failures)}).{kept} "
        "Check the network, or add a working mirror (or a `local:` path to a copy you downloaded) "
        "in the sources file (config/datasets.yaml)."
    )
