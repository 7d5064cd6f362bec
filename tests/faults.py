"""Test helpers for faults as the user meets them: the CLI run in-process or as a subprocess, the
one-line error contract, and small real file systems (a full or read-only tmpfs) made in a
private mount namespace."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PYTHON = sys.executable


def cli(capsys, *args) -> tuple[int, str]:
    """`python -m xbml ARGS` through the real entry point, in this process (no interpreter start-up):
    (exit code, stderr). An exception that escapes the CLI fails the test by itself."""
    from xbml.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def xbml(*args, timeout: float = 180, env: dict | None = None, prefix: list[str] | None = None):
    """`python -m xbml ARGS` as a subprocess, the way a user or a workflow runs it."""
    return subprocess.run(
        [*(prefix or []), PYTHON, "-m", "xbml", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )


def error_line(code: int, stderr: str, *fragments: str) -> str:
    """The contract: exit 2, no traceback, exactly one error line, holding every fragment."""
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stderr and "Original Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1, stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@functools.lru_cache(maxsize=1)
def private_mounts() -> str | None:
    """Why a private mount namespace (for a real tmpfs) is impossible here, or None when it works."""
    if shutil.which("unshare") is None:
        return "no unshare(1) on this machine"
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True, text=True,
    )
    if probe.returncode != 0:
        return f"no private mount namespace for a real tmpfs: {probe.stderr.strip()[:200]}"
    return None


def in_private_mount(script: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run a shell `script` in a user + mount namespace of its own, where it may mount a tmpfs
    (a real full or read-only file system) that nothing outside sees; skips where impossible."""
    reason = private_mounts()
    if reason:
        pytest.skip(reason)
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], cwd=ROOT, capture_output=True,
        text=True, timeout=timeout, env={**os.environ, "PYTHON": PYTHON},
    )


def leftovers(folder: Path) -> list[str]:
    """Temporary or half-written files under `folder` (what an interrupted atomic write leaves)."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if ".tmp" in p.name)
