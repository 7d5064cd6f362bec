"""`python -m xbml embed --model RUN/model.pt --split test --out EMB.npz`."""

from __future__ import annotations


def add_model_arguments(p) -> None:
    """The arguments every command that embeds with a trained model takes."""
    p.add_argument("--model", required=True, help="model.pt written by `xbml train`")
    p.add_argument("--prepared", default=None, help="prepared dataset folder (default: the one it was trained on)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")


def add_arguments(p) -> None:
    add_model_arguments(p)
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="which classes to embed")
    p.add_argument("--out", required=True, help="embeddings file (.npz)")


def run(args) -> int:
    from xbml.inference import Embedder
    from xbml.training.device import job_threads, set_threads

    set_threads(job_threads(args.threads))
    embedder = Embedder(args.model, args.device, args.prepared)
    n, dim = embedder.write(args.split, args.out, args.batch_size, progress=not args.no_progress)
    print(f"wrote {n} x {dim} embeddings of the {args.split} split to {args.out}")
    return 0
