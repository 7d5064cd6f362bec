"""One short check of the CUDA path, for a machine with a GPU (run it there, quote its figures).

Builds a synthetic 3-channel prepared dataset, trains ResNet-50 (random init: no weights are
downloaded) for a few iterations with XML on, with bf16 autocast and channels_last (the
defaults on CUDA), then embeds and evaluates the test classes. Prints the device, whether
bf16/channels_last were used, the step time of baseline and XML measured alternately, and
the metrics. Run: python benchmarks/cuda_check.py [--iterations 60]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iterations", type=int, default=60)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this check is for a GPU machine", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
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
