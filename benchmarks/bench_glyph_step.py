"""Cost of one glyph training step (baseline) by image size, backbone, memory layout and threads.

The reference is the first glyph net at 32x32 (max-pool downsampling, contiguous layout, 1
thread); every other variant is printed as a ratio to it, measured alternately in one run so
machine load hits all alike. Run: python benchmarks/bench_glyph_step.py [--rounds 5 --steps 30]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from xbml.config import load_config
from xbml.losses.base_losses import build_base_loss
from xbml.models import build_model


def make(cfg: dict, backbone: str, channels_last: bool):
    torch.manual_seed(0)
    model = build_model({**cfg["model"], "backbone": backbone}, 1)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss = build_base_loss(cfg["loss"], 400, cfg["model"]["embedding_dim"])
    return model, loss, torch.optim.AdamW(model.parameters(), lr=1e-3)


def step(model, loss_fn, optimizer, images, labels, channels_last: bool) -> float:
    t0 = time.perf_counter()
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    loss = loss_fn(model(images).embedding, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="config/train/glyphs.yaml")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    cfg = load_config(args.config)
    c, m = cfg["sampler"]["classes_per_batch"], cfg["sampler"]["images_per_class"]
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(c).repeat_interleave(m)
    images = {size: torch.rand(c * m, 1, size, size, generator=g) for size in (32, 24)}
    variants = [(32, "glyph_convnet", False, 1)] + list(itertools.product(
        (32, 24), ("glyph_convnet", "glyph_convnet_avgpool", "glyph_convnet_slim", "glyph_convnet_strided"), (False, True), (1, 2)))[1:]
    built = {v: make(cfg, v[1], v[2]) for v in variants}
    times: dict = {v: [] for v in variants}
    for _ in range(args.rounds + 1):  # the first round warms up
        for v in variants:
            torch.set_num_threads(v[3])
            times[v].append(statistics.median(step(*built[v], images[v[0]], labels, v[2]) for _ in range(args.steps)))
    medians = {v: statistics.median(t[1:]) for v, t in times.items()}
    reference = medians[variants[0]]
    print(f"glyph training step, batch {c}x{m}, median of {args.rounds} rounds x {args.steps} steps")
    for (size, backbone, cl, threads), t in medians.items():
        layout = "channels_last" if cl else "contiguous"
        print(f"  {size}px {backbone:22s} {layout:13s} {threads} thread(s): {t * 1e3:7.1f} ms  {t / reference:.3f}x")


if __name__ == "__main__":
    main()
