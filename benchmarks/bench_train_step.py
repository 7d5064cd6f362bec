"""Training-step time of XML vs the baseline on the glyph net, measured alternately in one process.

Target: XML's step costs at most 1.15x the baseline's. Run: python benchmarks/bench_train_step.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from xbml.config import load_config
from xbml.losses.base_losses import build_base_loss
from xbml.losses.cross_batch import build_regularizer
from xbml.models import build_model
from xbml.training.objective import Objective


def make_objective(cfg: dict, num_classes: int, with_xml: bool) -> tuple[Objective, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = build_model(cfg["model"], 1)
    base = build_base_loss(cfg["loss"], num_classes, cfg["model"]["embedding_dim"])
    reg = None
    if with_xml:
        reg = build_regularizer(cfg["xml"], model.feature_dim, cfg["model"]["embedding_dim"], num_classes, 0)
    objective = Objective(model, base, reg, cfg["xml"]["weight"] if with_xml else 0.0)
    return objective, torch.optim.AdamW(objective.parameters(), lr=1e-3)


def step(objective, optimizer, images, labels, split) -> float:
    t0 = time.perf_counter()
    loss = objective(images, labels, split)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="config/train/glyphs.yaml")
    ap.add_argument("--steps", type=int, default=60, help="timed steps per method per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, ["xml.weight=0.1"])
    c, m = cfg["sampler"]["classes_per_batch"], cfg["sampler"]["images_per_class"]
    num_classes = 400
    g = torch.Generator().manual_seed(0)
    images = torch.randn(c * m, 1, 32, 32, generator=g)
    labels = torch.arange(c).repeat_interleave(m)
    split = c * m // 2
    runs = {"baseline": make_objective(cfg, num_classes, False), "xml": make_objective(cfg, num_classes, True)}
    for objective, optimizer in runs.values():  # warm-up
        for _ in range(5):
            step(objective, optimizer, images, labels, split)
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (objective, optimizer) in runs.items():  # alternate so load affects both alike
            times[name].append(statistics.median(step(objective, optimizer, images, labels, split) for _ in range(args.steps)))
    base, xml = statistics.median(times["baseline"]), statistics.median(times["xml"])
    print(f"batch {c}x{m}, {args.threads} thread(s), median of {args.rounds} rounds x {args.steps} steps")
    print(f"baseline step: {base * 1e3:8.2f} ms")
    print(f"xml step:      {xml * 1e3:8.2f} ms")
    print(f"xml / baseline = {xml / base:.3f}x   (target <= 1.15x: {'met' if xml / base <= 1.15 else 'NOT met'})")


if __name__ == "__main__":
    main()
