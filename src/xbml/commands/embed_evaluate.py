"""`python -m xbml embed-evaluate --model RUN/model.pt --split val test`: `xbml embed` then
`xbml evaluate` for each split, in one process that loads torch, faiss and the model once.

Writes `embeddings_<split>.npz` and `metrics_<split>.json` into `--out-dir` (default: the
model's folder), the same files the two commands write one by one (the workflow's
`embed_evaluate` rule: one job per model instead of two per split).
"""

from __future__ import annotations


def add_arguments(p) -> None:
    from xbml.commands.embed import add_model_arguments

    add_model_arguments(p)
    p.add_argument("--split", nargs="+", default=["val", "test"], choices=("train", "val", "test"),
                   help="splits to embed and evaluate (default: val test)")
    p.add_argument("--out-dir", default=None, help="folder of the embeddings and metrics files (default: the model's)")


def run(args) -> int:
    from pathlib import Path

    from xbml.commands.evaluate import evaluate_file
    from xbml.inference import Embedder
    from xbml.training.device import job_threads, set_threads

    threads = job_threads(args.threads)
    set_threads(threads)
    out = Path(args.out_dir) if args.out_dir else Path(args.model).parent
    embedder = Embedder(args.model, args.device, args.prepared)
    for split in dict.fromkeys(args.split):
        embeddings = out / f"embeddings_{split}.npz"
        n, dim = embedder.write(split, embeddings, args.batch_size, progress=not args.no_progress)
        print(f"wrote {n} x {dim} embeddings of the {split} split to {embeddings}")
        evaluate_file(embeddings, out / f"metrics_{split}.json", threads=threads)
    return 0
