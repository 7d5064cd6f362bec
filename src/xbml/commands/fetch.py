"""`python -m xbml fetch DATASET --out DIR`: raw files of a dataset, verified (or generated)."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("dataset", help="dataset name (glyphs, cub200, cars196, sop, inshop)")
    p.add_argument("--out", required=True, help="raw dataset folder to create")
    p.add_argument(
        "--sources",
        default=None,
        help="YAML file with mirrors, checksums and local archive paths (default: config/datasets.yaml)",
    )
    p.add_argument("--seed", type=int, default=0, help="generation seed (embedded dataset only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from xbml.datasets.registry import get_dataset
    from xbml.locks import folder_lock
    from xbml.datasets.sources import load_sources

    dataset = get_dataset(args.dataset)
    sources = load_sources(args.sources, args.dataset)
    # one writer per folder: a second fetch or prepare would delete the first one's staging folder
    with folder_lock(args.out, "raw dataset folder"):
        dataset.fetch(args.out, sources=sources, seed=args.seed, progress=not args.no_progress)
    return 0
