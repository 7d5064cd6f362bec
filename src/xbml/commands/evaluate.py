"""`python -m xbml evaluate EMB.npz --out metrics.json`: MAP@R, R-Precision, P@1, Recall@k.

Reads an embeddings file (see xbml.evaluation.embeddings_file), L2-normalises
the embeddings and runs an exact inner-product k-NN search: query = reference
with self excluded, or query vs gallery when the file has `query`/`gallery`
masks. Uses numpy and faiss only (never torch), in bounded memory. Refused by
name, before any search: embeddings that cannot be normalised (see
xbml.evaluation.embeddings_file), a single class, and files where no query has a
reference of its class.
"""

from __future__ import annotations

from xbml.metric_names import RECALL_KS


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_arguments(p) -> None:
    p.add_argument("embeddings", help="embeddings file (.npz) written by `xbml embed`")
    p.add_argument("--out", required=True, help="metrics file to write (.json)")
    p.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=None,
        help="items per score tile (query = reference; default 1024) or queries per search (query/gallery; default 4096)",
    )
    p.add_argument("--threads", type=_positive_int, default=None, help="worker threads (default: the CPUs available)")
    p.add_argument(
        "--recall-at",
        type=_positive_int,
        nargs="+",
        default=list(RECALL_KS),
        metavar="K",
        help="k values of Recall@k (default: 1 2 4 8)",
    )


def evaluate_file(embeddings, out, chunk_size=None, threads=None, recall_at=RECALL_KS) -> dict:
    """The retrieval metrics of an embeddings file, written to the JSON file `out`."""
    import logging
    import math
    import os

    from xbml.atomic import write_json
    from xbml.errors import DataError
    from xbml.evaluation.embeddings_file import load_embeddings
    from xbml.evaluation.retrieval_metrics import retrieval_metrics

    log = logging.getLogger("xbml.evaluate")
    ef = load_embeddings(embeddings)
    try:
        metrics = retrieval_metrics(
            ef.embeddings,
            ef.labels,
            query_mask=ef.query,
            gallery_mask=ef.gallery,
            ks=tuple(recall_at),
            chunk_size=chunk_size,
            threads=threads,
            refuse_trivial=True,
        )
    except DataError as exc:
        raise DataError(f"{embeddings}: {exc}") from None
    assert all(not isinstance(v, float) or math.isfinite(v) for v in metrics.values())
    metrics["embeddings_file"] = os.fspath(embeddings)
    write_json(out, metrics)
    log.info(
        "MAP@R %.4f  R-Precision %.4f  P@1 %.4f  (%d queries, %s, %.1f s) -> %s",
        metrics["map_at_r"],
        metrics["r_precision"],
        metrics["precision_at_1"],
        metrics["num_queries"],
        metrics["protocol"],
        metrics["seconds"],
        out,
    )
    return metrics


def run(args) -> int:
    evaluate_file(args.embeddings, args.out, args.chunk_size, args.threads, args.recall_at)
    return 0
