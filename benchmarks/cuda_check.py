"""One short check of the CUDA path, for a machine with a GPU (run it there, quote its figures).

Builds a synthetic 3-channel prepared dataset, trains ResNet-50 (random init: no weights are
downloaded) for a few iterations with XML on, with bf16 autocast and channels_last (the
defaults on CUDA), then embeds and evaluates the test classes. Prints the device, whether
bf16/channels_last were used, the step time of baseline and XML measured alternately, and
the metrics.

Then the loader against the step at the real config (config/train/real_images.yaml: batch 32 =
8 classes x 4, 224 px crops, bf16, channels_last): generated CUB-sized JPEGs (500 x 375) are
loaded by `training_batches` with the job's loader workers (data.workers, at most the CPUs this
process may use) from the original JPEGs decoded in the workers, from the original JPEGs decoded
on the GPU in batches (data.decode: device), and from the prepared image store; the training
step of ResNet-50 and BN-Inception on a batch already on the GPU gives the images/s the GPU
eats. The slower of loader and step bounds the run; the line `bound by:` says which.

Run: python benchmarks/cuda_check.py [--iterations 60] [--workers 8] [--loader-batches 40]
(`--cpu` runs the same code on the CPU with small numbers, to check the script, not to measure.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_dataset(out: Path, classes: int = 64, per_class: int = 12, size: int = 128) -> Path:
    from xbml.datasets.manifest import Manifest, split_classes, write_manifest

    rng = np.random.default_rng(0)
    templates = rng.integers(0, 255, size=(classes, size, size, 3))
    images = templates[:, None] + rng.normal(0, 50, size=(classes, per_class, size, size, 3))
    images = np.clip(images, 0, 255).astype(np.uint8).reshape(-1, size, size, 3)
    labels = np.repeat(np.arange(classes), per_class)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "store.npz", images=images)
    split, fold = split_classes(labels, np.arange(classes // 2, classes), 0.2, 0)
    roles = np.array(["both"] * len(labels), dtype=object)
    info = {"name": "cuda-check", "array_store": "store.npz", "channels": 3, "protocol": "self"}
    write_manifest(out, Manifest([f"#{i}" for i in range(len(labels))], labels, split, roles, fold, info=info))
    return out


def step_times(prepared: Path, iterations: int) -> dict:
    """Median step time of baseline and XML, alternating blocks of steps in one process."""
    from xbml.config import load_config
    from xbml.training.trainer import Trainer

    common = [f"data.prepared={prepared}", "data.image_size=128", "model.backbone=resnet50",
              "model.embedding_dim=128", "sampler.classes_per_batch=8", "sampler.images_per_class=4",
              "train.progress=false"]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            name: Trainer(load_config(None, common + [f"xml.weight={w}", f"train.iterations={iterations}"]), Path(tmp) / name)
            for name, w in (("baseline", 0.0), ("xml", 0.1))
        }
        times = {name: [] for name in trainers}
        for block in range(4):
            for name, tr in trainers.items():
                obj, opt = tr.objective, tr.optimizer
                idx, _ = tr.sampler.batch(block)
                images = torch.stack([tr.train_set.load(int(r)) for r in tr.train_set.rows[idx]]).to(tr.device)
                labels = torch.as_tensor(tr.train_set.targets[idx]).to(tr.device)
                if tr.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                for _ in range(10):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    from xbml.training.device import autocast

                    with autocast(tr.device, tr.bf16):
                        loss = obj(images, labels, tr.sampler.split)["loss"]
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    torch.cuda.synchronize()
                    if block:  # block 0 is warm-up
                        times[name].append(time.perf_counter() - t0)
        for name, tr in trainers.items():
            out[name] = {"step_ms": 1e3 * statistics.median(times[name]), "bf16": tr.bf16, "channels_last": tr.channels_last}
    out["xml_over_baseline"] = out["xml"]["step_ms"] / out["baseline"]["step_ms"]
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def loader_images_per_s(trainer, workers: int, batches: int, decode: str) -> float:
    """Images/s the loader delivers onto the device (after a warm-up of 2 * workers batches)."""
    from xbml.datasets.device_decode import batch_to_device
    from xbml.datasets.torch_data import training_batches

    ds = trainer.train_set
    ds.decode_on_device = decode == "device" and ds.image_store is None
    warm = 2 * max(1, workers)
    loader = training_batches(ds, trainer.sampler, 0, warm + batches, workers, pin_memory=trainer.device.type == "cuda",
                              channels_last=trainer.channels_last)
    n, t0 = 0, None
    for k, (images, _) in enumerate(loader):
        images = batch_to_device(images, trainer.device, trainer.channels_last)
        if k + 1 == warm:
            _sync(trainer.device)
            t0 = time.perf_counter()
        elif k >= warm:
            n += images.shape[0]
    _sync(trainer.device)
    return n / (time.perf_counter() - t0)


def step_images_per_s(trainer, steps: int) -> float:
    """Images/s of the training step on one batch already on the device (uint8, normalised there)."""
    from xbml.datasets.device_decode import batch_to_device
    from xbml.datasets.torch_data import training_batches
    from xbml.training.device import autocast

    images, labels = next(iter(training_batches(trainer.train_set, trainer.sampler, 0, 1, 0, False)))
    images = batch_to_device(images, trainer.device, trainer.channels_last)
    labels = labels.to(trainer.device)
    obj, opt = trainer.objective, trainer.optimizer
    times = []
    for k in range(steps + 3):
        _sync(trainer.device)
        t0 = time.perf_counter()
        with autocast(trainer.device, trainer.bf16):
            loss = obj(images, labels, trainer.sampler.split)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(trainer.device)
        if k >= 3:
            times.append(time.perf_counter() - t0)
    return images.shape[0] / statistics.median(times)


def loader_vs_step(tmp: Path, workers: int, batches: int, steps: int, cpu: bool) -> None:
    import os

    from bench_loader import make_prepared

    from xbml.config import load_config
    from xbml.training.trainer import Trainer

    root = Path(__file__).resolve().parents[1]
    classes, per_class = (16, 6) if cpu else (64, 8)
    prepared = make_prepared(tmp / "jpegs", (375, 500), classes * per_class, classes=classes)
    workers = min(workers, len(os.sched_getaffinity(0)))
    common = [f"data.prepared={prepared}", "model.pretrained=false", "train.progress=false", f"data.workers={workers}"]
    if cpu:
        common += ["train.device=cpu", "data.image_size=64"]
    print(f"\nloader vs step, real config (config/train/real_images.yaml), {workers} loader workers, "
          f"CUB-sized JPEGs (500x375):")
    rates = {}
    for backbone in ("resnet50", "bn_inception"):
        trainer = Trainer(load_config(root / "config/train/real_images.yaml", common + [f"model.backbone={backbone}"]),
                          tmp / f"run-{backbone}")
        trainer.objective.train()
        rates[f"step {backbone}"] = step_images_per_s(trainer, steps)
        print(f"  step ({backbone}, batch {trainer.sampler.batch_size}, bf16 {trainer.bf16}, "
              f"channels_last {trainer.channels_last}): {rates[f'step {backbone}']:.0f} images/s")
    for source, decode, label in (("original", "cpu", "original JPEGs, decoded in the workers"),
                                  ("original", "device", "original JPEGs, decoded on the device in batches"),
                                  ("store", "cpu", "prepared store (short side 256)")):
        cfg = load_config(root / "config/train/real_images.yaml",
                          common + [f"data.image_source={source}", f"data.decode={decode}"])
        trainer = Trainer(cfg, tmp / f"loader-{source}-{decode}")
        rates[label] = loader_images_per_s(trainer, workers, batches, decode)
        print(f"  loader ({label}): {rates[label]:.0f} images/s")
    step = min(v for k, v in rates.items() if k.startswith("step"))
    for label in [k for k in rates if not k.startswith("step")]:
        bound = "the loader" if rates[label] < step else "the step"
        print(f"  bound by: {bound} with {label} ({rates[label]:.0f} vs the slower step's {step:.0f} images/s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--workers", type=int, default=8, help="loader workers (the GPU profile's data.workers)")
    ap.add_argument("--loader-batches", type=int, default=40)
    ap.add_argument("--cpu", action="store_true", help="run the loader-vs-step part on the CPU, tiny (a script check)")
    args = ap.parse_args()
    if args.cpu:
        with tempfile.TemporaryDirectory() as tmp:
            loader_vs_step(Path(tmp), min(args.workers, 2), 3, 2, cpu=True)
        return 0
    if not torch.cuda.is_available():
        print("no CUDA device: this check is for a GPU machine", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
    with tempfile.TemporaryDirectory() as tmp:
        loader_vs_step(Path(tmp), args.workers, args.loader_batches, 20, cpu=False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared = make_dataset(tmp / "prepared")
        print(json.dumps(step_times(prepared, args.iterations), indent=2))
        run = tmp / "run"
        sets = [f"data.prepared={prepared}", "data.image_size=128", "model.backbone=resnet50", "model.embedding_dim=128",
                "sampler.classes_per_batch=8", "sampler.images_per_class=4", "xml.weight=0.1",
                f"train.iterations={args.iterations}", f"train.eval_every={args.iterations // 2}", "train.progress=false"]
        cmd = [sys.executable, "-m", "xbml", "train", "--out", str(run)] + [a for s in sets for a in ("--set", s)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        print(f"train ({args.iterations} iterations, incl. start-up and validation): {time.perf_counter() - t0:.1f} s")
        subprocess.run([sys.executable, "-m", "xbml", "embed", "--model", str(run / "model.pt"), "--split", "test",
                        "--no-progress", "--out", str(run / "emb.npz")], check=True)
        subprocess.run([sys.executable, "-m", "xbml", "evaluate", str(run / "emb.npz"), "--out", str(run / "m.json")], check=True)
        summary = json.loads((run / "train_summary.json").read_text())
        metrics = json.loads((run / "m.json").read_text())
        print(json.dumps({"train_summary": summary, "test": {k: metrics[k] for k in ("map_at_r", "precision_at_1", "recall_at_1")}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
