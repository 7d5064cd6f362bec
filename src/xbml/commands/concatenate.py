"""`python -m xbml concatenate A.npz B.npz ... --out AB.npz`: the models' embeddings of one split,
each L2-normalised, side by side (MLRC's concatenated evaluation of the 4 fold models)."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("embeddings", nargs="+", help="embeddings files (.npz) of the same split, in model order")
    p.add_argument("--out", required=True, help="embeddings file to write (.npz)")


def run(args) -> int:
    from xbml.evaluation.concatenation import write_concatenated

    ef = write_concatenated(args.embeddings, args.out)
    print(f"wrote {len(ef)} x {ef.embeddings.shape[1]} embeddings ({len(args.embeddings)} models) to {args.out}")
    return 0
