"""Trained model files and embeddings of a split (shared by validation and `xbml embed`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xbml.datasets.device_decode import batch_to_device
from xbml.datasets.manifest import Manifest
from xbml.datasets.torch_data import ManifestImages, eval_batches
from xbml.errors import CheckpointError
from xbml.models import build_model


def split_dataset(manifest: Manifest, split: str, data_cfg: dict) -> ManifestImages:
    """The images of a split as the model was trained on it: a fold model's `val` is its fold."""
    rows = manifest.fold_indices(split, data_cfg.get("fold"), data_cfg["max_classes"])
    return ManifestImages(
        manifest,
        rows,
        manifest.labels[rows],
        image_size=data_cfg["image_size"],
        resize=data_cfg["resize"],
        train=False,
        **image_options(data_cfg),
    )


def image_options(data_cfg: dict) -> dict:
    """Where real images are read from and decoded (keys of configs older than the store: defaults)."""
    return {
        "image_source": data_cfg.get("image_source", "auto"),
        "decode_on_device": data_cfg.get("decode", "cpu") == "device",
    }


@torch.no_grad()
def compute_embeddings(
    model, dataset: ManifestImages, batch_size: int, device: torch.device, workers: int = 0,
    channels_last: bool = False, bf16: bool = False, progress: bool = False,
) -> np.ndarray:
    from tqdm.auto import tqdm

    from xbml.training.device import autocast

    was_training = model.training
    model.eval()
    out = []
    loader = eval_batches(dataset, batch_size, workers, pin_memory=device.type == "cuda", channels_last=channels_last)
    for images, _ in tqdm(loader, desc="embed", disable=not progress, mininterval=2.0):
        images = batch_to_device(images, device, channels_last)
        with autocast(device, bf16):
            e = model(images).embedding
        out.append(torch.nn.functional.normalize(e.float(), dim=1).cpu())
    model.train(was_training)
    if not out:
        return np.zeros((0, model.head.linear.out_features), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32, copy=False)


def load_trained_model(path: str | Path):
    """(model, file contents) from a `model.pt` written by `xbml train`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model file {path} does not exist; run `python -m xbml train` first")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        cfg = blob["config"]
        model = build_model({**cfg["model"], "pretrained": False}, blob["in_channels"])
        model.load_state_dict(blob["state_dict"])
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"model file {path} is unreadable or incompatible: {exc}") from None
    return model, blob
