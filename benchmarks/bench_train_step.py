"""Training-step time of XML vs the baseline, measured alternately in one process.

Two cases: the glyph net on 32x32 glyphs (target: XML's step at most 1.15x the baseline's) and
ResNet-50 at 224 px with a small CPU batch (target: at most 1.03x; XML's extra work, the per-location
projection, assignment and two ridge solves, is tiny next to the backbone).
Run: python benchmarks/bench_train_step.py [--case glyph_convnet|resnet50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from xbml.config import load_config
from xbml.losses.base_losses import build_base_loss
from xbml.models import build_model
from xbml.regularizers import BuildContext
from xbml.regularizers.xml import XmlRegularizer
from xbml.training.objective import Objective


CASES = {
    # name: (training config, input channels, image size, classes per batch, images per class, steps, rounds)
    "glyph_convnet": ("config/train/glyphs.yaml", 1, 32, None, None, 60, 5),
    "resnet50": ("config/train/real_images.yaml", 3, 224, 4, 2, 4, 3),
}


def make_objective(cfg: dict, num_classes: int, with_xml: bool, in_channels: int):
    torch.manual_seed(0)
    model = build_model(cfg["model"], in_channels)
    base = build_base_loss(cfg["loss"], num_classes, cfg["model"]["embedding_dim"])
    regs = {}
    if with_xml:
        regs = {"xml": XmlRegularizer.build(cfg["xml"], BuildContext(model, base, cfg, num_classes, 1))}
    objective = Objective(model, base, regs, {"xml": cfg["xml"]["weight"]} if with_xml else {})
    return objective, torch.optim.AdamW(objective.parameters(), lr=1e-3)


def step(objective, optimizer, images, labels, split) -> float:
    t0 = time.perf_counter()
    loss = objective(images, labels, split)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - t0


def measure(case: str, threads: int, steps: int | None, rounds: int | None) -> float:
    path, channels, size, c, m, default_steps, default_rounds = CASES[case]
    steps, rounds = steps or default_steps, rounds or default_rounds
    cfg = load_config(path, ["xml.weight=0.1", "model.pretrained=false"])
    c, m = c or cfg["sampler"]["classes_per_batch"], m or cfg["sampler"]["images_per_class"]
    num_classes = 400
    g = torch.Generator().manual_seed(0)
    images = torch.randn(c * m, channels, size, size, generator=g)
    labels = torch.arange(c).repeat_interleave(m)
    split = c * m // 2
    runs = {name: make_objective(cfg, num_classes, name == "xml", channels) for name in ("baseline", "xml")}
    for objective, optimizer in runs.values():  # warm-up
        for _ in range(2):
            step(objective, optimizer, images, labels, split)
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (objective, optimizer) in runs.items():  # alternate so load affects both alike
            times[name].append(statistics.median(step(objective, optimizer, images, labels, split) for _ in range(steps)))
    base, xml = statistics.median(times["baseline"]), statistics.median(times["xml"])
    print(f"{case}: batch {c}x{m} at {size} px, {threads} thread(s), median of {rounds} rounds x {steps} steps")
    print(f"  baseline step: {base * 1e3:9.2f} ms")
    print(f"  xml step:      {xml * 1e3:9.2f} ms")
    return xml / base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--case", choices=[*CASES, "all"], default="all")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per method per round")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    targets = {"glyph_convnet": 1.15, "resnet50": 1.03}
    cases = list(CASES) if args.case == "all" else [args.case]
    ratios = {case: measure(case, args.threads, args.steps, args.rounds) for case in cases}
    for case, ratio in ratios.items():
        verdict = "met" if ratio <= targets[case] else "NOT met"
        print(f"{case}: xml / baseline = {ratio:.3f}x   (target <= {targets[case]:.2f}x: {verdict})")


if __name__ == "__main__":
    main()
