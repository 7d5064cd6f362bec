"""`python -m xbml embed --model RUN/model.pt --split test --out EMB.npz`."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="model.pt written by `xbml train`")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="which classes to embed")
    p.add_argument("--prepared", default=None, help="prepared dataset folder (default: the one it was trained on)")
    p.add_argument("--out", required=True, help="embeddings file (.npz)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    import numpy as np

    from xbml.datasets.manifest import read_manifest
    from xbml.evaluation.embeddings_file import save_embeddings
    from xbml.inference import compute_embeddings, load_trained_model, split_dataset
    from xbml.training.device import select_device, set_threads, torch_threads, use_bf16, use_channels_last

    model, blob = load_trained_model(args.model)
    cfg = blob["config"]
    set_threads(torch_threads(args.threads, cfg["data"]["workers"]))
    device = select_device(args.device)
    manifest = read_manifest(args.prepared or cfg["data"]["prepared"])
    dataset = split_dataset(manifest, args.split, cfg["data"])
    channels_last = use_channels_last(cfg["train"]["channels_last"], device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch_channels_last())
    emb = compute_embeddings(
        model, dataset, args.batch_size or cfg["eval"]["batch_size"], device, workers=cfg["data"]["workers"],
        channels_last=channels_last, bf16=use_bf16(cfg["train"]["amp"], device), progress=not args.no_progress,
    )
    roles = manifest.roles[dataset.rows]
    query = gallery = None
    if (roles != "both").any():
        query, gallery = roles == "query", roles == "gallery"
    save_embeddings(args.out, emb, dataset.targets.astype(np.int64), query=query, gallery=gallery,
                    rows=dataset.rows.astype(np.int64))
    print(f"wrote {len(emb)} x {emb.shape[1]} embeddings of the {args.split} split to {args.out}")
    return 0


def torch_channels_last():
    import torch

    return torch.channels_last
