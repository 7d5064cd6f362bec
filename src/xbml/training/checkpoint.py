"""Checkpoints written atomically and read with errors a user can act on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from xbml.os_errors import save_torch
from xbml.errors import CheckpointError

# changing these does not change what a step computes, so a run may resume across them
RESUMABLE_KEYS = {("train", "iterations"), ("train", "progress"), ("train", "threads"), ("data", "workers"),
                  ("train", "checkpoint_every"), ("train", "device")}


def config_fingerprint(cfg: dict) -> str:
    def strip(node: dict, prefix=()):
        return {
            k: strip(v, prefix + (k,)) if isinstance(v, dict) and k not in ("params", "miner_params") else v
            for k, v in node.items()
            if prefix + (k,) not in RESUMABLE_KEYS
        }

    blob = json.dumps(strip(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_checkpoint(path: Path, state: dict) -> None:
    save_torch(state, path)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every unreadable file gets the same advice
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {reason}). It was left untouched; "
            "delete it to train from scratch, or restore it from a backup"
        ) from None
