"""Trained model files and embeddings of a split (shared by validation and `xbml embed`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xbml.datasets.device_decode import batch_to_device
from xbml.datasets.manifest import Manifest
from xbml.datasets.torch_data import ManifestImages, eval_batches
from xbml.errors import CheckpointError, DataError
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


class Embedder:
    """A trained model on its device, ready to embed splits of its prepared dataset (or of
    `prepared`): `xbml embed` and `xbml embed-evaluate` load it once for every split."""

    def __init__(self, model_path: str | Path, device: str = "auto", prepared: str | Path | None = None):
        from xbml.datasets.manifest import read_manifest
        from xbml.training.device import select_device, use_bf16, use_channels_last

        self.model, blob = load_trained_model(model_path)
        self.cfg = blob["config"]
        self.device = select_device(device)
        self.manifest = read_manifest(prepared or self.cfg["data"]["prepared"])
        channels = int(self.manifest.info.get("channels", 3))
        if channels != int(blob["in_channels"]):
            raise DataError(
                f"{self.manifest.root} has {channels}-channel images but {model_path} was trained on "
                f"{blob['in_channels']}-channel images; embed a prepared folder of the dataset it was trained on"
            )
        self.channels_last = use_channels_last(self.cfg["train"]["channels_last"], self.device)
        self.bf16 = use_bf16(self.cfg["train"]["amp"], self.device)
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def write(self, split: str, out: str | Path, batch_size: int | None = None, progress: bool = True) -> tuple[int, int]:
        """Embed `split` into the embeddings file `out`; (items, dimensions)."""
        from xbml.evaluation.embeddings_file import save_embeddings

        dataset = split_dataset(self.manifest, split, self.cfg["data"])
        emb = compute_embeddings(
            self.model, dataset, batch_size or self.cfg["eval"]["batch_size"], self.device,
            workers=self.cfg["data"]["workers"], channels_last=self.channels_last, bf16=self.bf16, progress=progress,
        )
        roles = self.manifest.roles[dataset.rows]
        query = gallery = None
        if (roles != "both").any():
            query, gallery = roles == "query", roles == "gallery"
        save_embeddings(out, emb, dataset.targets.astype(np.int64), query=query, gallery=gallery,
                        rows=dataset.rows.astype(np.int64))
        return int(emb.shape[0]), int(emb.shape[1])


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
