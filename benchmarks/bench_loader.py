"""Images/s per core of the real-image items: the old path (PIL, torchvision transforms, float
normalisation on the CPU: xbml.datasets.reference_transforms) against the new uint8 paths
(original JPEGs through `ManifestImages`, and the prepared image store), alternated in rounds in
one process on one torch thread, on generated JPEGs of the three MLRC datasets' typical sizes:

- CUB-200-2011: 500 x 375 (most images are 500 px on the long side, 4:3 or 3:2);
- Cars196: 700 x 480 (sizes vary widely; about the mean of the set);
- SOP: 600 x 600 (eBay product photos, mostly square-ish, up to 640 px).

Per core = images per second of CPU time of this process (wall time beside it), the median of
the rounds. Each set ends with the two `train transform (...)` lines; the last block pools the
three sets (total images over total CPU time, every set the same number of images). Also measured: how far a
training crop from the store (short side 256) is from the same crop of the original, on small
crops (under 30% of the image) and on all, as a mean absolute difference in 0-255 units.

Run: python benchmarks/bench_loader.py [--images 48 --rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SETS = {"CUB-sized 500x375": (375, 500), "Cars-sized 700x480": (480, 700), "SOP-sized 600x600": (600, 600)}
SIZE, RESIZE = 224, 256


def photo(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth structure plus texture, so the JPEG size and decode cost are those of a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    f = rng.uniform(0.005, 0.03, 3)
    base = np.stack([np.sin(x * f[0] + y * f[1]), np.cos(y * f[2]), np.sin((x - y) * f[1])], axis=-1)
    img = 128 + 90 * base + rng.normal(0, 12, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_prepared(folder: Path, shape: tuple[int, int], n: int, classes: int = 4) -> Path:
    from xbml.datasets.image_store import STORE_FOLDER, build_image_store
    from xbml.datasets.manifest import Manifest, write_manifest

    images = folder / "images"
    images.mkdir(parents=True)
    names = []
    for k in range(n):
        names.append(f"{k:04d}.jpg")
        Image.fromarray(photo(*shape, k)).save(images / names[-1], quality=90)
    build_image_store([images / p for p in names], folder / STORE_FOLDER, RESIZE, None, False)
    labels = np.arange(n) % classes
    info = {"name": "bench", "image_root": "images", "channels": 3, "protocol": "self", "image_store": STORE_FOLDER}
    write_manifest(
        folder,
        Manifest(names, labels, np.array(["train"] * n, dtype=object), np.array(["both"] * n, dtype=object),
                 np.zeros(n, dtype=np.int64), info=info),
    )
    return folder


def timed(fn, items) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of fn over items."""
    c0, w0 = time.process_time(), time.perf_counter()
    for item in items:
        fn(item)
    return time.process_time() - c0, time.perf_counter() - w0


def measure(prepared: Path, rounds: int, seed0: int) -> dict:
    from xbml.datasets.manifest import read_manifest
    from xbml.datasets.reference_transforms import reference_item
    from xbml.datasets.torch_data import ManifestImages

    m = read_manifest(prepared)
    rows = np.arange(len(m))
    paths = [m.image_root / p for p in m.images]

    def dataset(train: bool, source: str) -> ManifestImages:
        return ManifestImages(m, rows, m.labels, SIZE, RESIZE, train=train, image_source=source)

    paths_of = {
        "train": {
            "old": lambda k: reference_item(paths[k[0]], SIZE, RESIZE, k[1]),
            "jpeg": dataset(True, "original").__getitem__,
            "store": dataset(True, "store").__getitem__,
        },
        "eval": {
            "old": lambda k: reference_item(paths[k[0]], SIZE, RESIZE, None),
            "jpeg": lambda k, d=dataset(False, "original"): d[k[0]],
            "store": lambda k, d=dataset(False, "store"): d[k[0]],
        },
    }
    out = {kind: {name: {"cpu": [], "wall": []} for name in fns} for kind, fns in paths_of.items()}
    for r in range(rounds + 1):  # round 0 warms caches up and is not counted
        items = [(int(k), seed0 + 1000 * r + int(k)) for k in rows]
        for kind, fns in paths_of.items():
            for name, fn in fns.items():
                cpu, wall = timed(fn, items)
                if r:
                    out[kind][name]["cpu"].append(cpu)
                    out[kind][name]["wall"].append(wall)
    return out


def crop_difference(prepared: Path, crops: int) -> tuple[float, float]:
    """Mean |store crop - original crop| (0-255) for the same seeds: small crops, all crops."""
    from xbml.datasets import fast_transforms as ft
    from xbml.datasets.manifest import read_manifest
    from xbml.datasets.torch_data import ManifestImages

    m = read_manifest(prepared)
    rows = np.arange(len(m))
    jpeg = ManifestImages(m, rows, m.labels, SIZE, RESIZE, train=True, image_source="original")
    store = ManifestImages(m, rows, m.labels, SIZE, RESIZE, train=True, image_source="store")
    small, every = [], []
    for k in range(crops):
        row, seed = k % len(rows), 7919 * k
        h, w = store.image_store.original_size(row)
        aug = ft.draw_augmentation(seed, h, w)
        diff = (jpeg[(row, seed)][0].float() - store[(row, seed)][0].float()).abs().mean().item()
        every.append(diff)
        if aug.height * aug.width < 0.3 * h * w:
            small.append(diff)
    return statistics.mean(small), statistics.mean(every)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=48, help="images per set")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; {args.images} images per set, {args.rounds} alternated rounds "
          "(old, original JPEGs, store; training then evaluation items)")
    totals = {kind: {name: [0.0, 0.0] for name in ("old", "jpeg", "store")} for kind in ("train", "eval")}
    label = {"old": "old path", "jpeg": "original JPEGs", "store": "prepared store"}
    with tempfile.TemporaryDirectory() as tmp:
        for s, (set_name, shape) in enumerate(SETS.items()):
            t0 = time.perf_counter()
            prepared = make_prepared(Path(tmp) / f"set{s}", shape, args.images)
            print(f"\n{set_name}: {args.images} JPEGs and their store written in {time.perf_counter() - t0:.1f} s")
            res = measure(prepared, args.rounds, seed0=s * 10**6)
            for kind in ("train", "eval"):
                old = args.images / statistics.median(res[kind]["old"]["cpu"])
                for name in ("old", "jpeg", "store"):
                    cpu = args.images / statistics.median(res[kind][name]["cpu"])
                    wall = args.images / statistics.median(res[kind][name]["wall"])
                    totals[kind][name][0] += sum(res[kind][name]["cpu"])
                    totals[kind][name][1] += sum(res[kind][name]["wall"])
                    print(f"  {kind:5s} {label[name]:15s} {cpu:7.0f} images/s per core (CPU time), "
                          f"{wall:7.0f} wall, {cpu / old:5.2f} x the old path")
            for name in ("jpeg", "store"):  # the lines, per set (medians of the rounds)
                rate = args.images / statistics.median(res["train"][name]["cpu"])
                old = args.images / statistics.median(res["train"]["old"]["cpu"])
                print(f"train transform ({label[name]}): {rate:.0f} images/s per core, {rate / old:.1f} x the old path")
            small, every = crop_difference(prepared, 200)
            print(f"  store vs original training crops (same seeds): mean |difference| {small:.2f} of 255 on crops "
                  f"under 30% of the image, {every:.2f} on all")
    n = args.images * args.rounds * len(SETS)
    print(f"\nall three sets pooled ({n} images per path and kind):")
    for kind, word in (("train", "train"), ("eval", "eval")):
        old = n / totals[kind]["old"][0]
        for name in ("jpeg", "store"):
            rate = n / totals[kind][name][0]
            print(f"{word} transform ({label[name]}): {rate:.0f} images/s per core, {rate / old:.1f} x the old path")
        print(f"{word} transform (old path): {old:.0f} images/s per core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
