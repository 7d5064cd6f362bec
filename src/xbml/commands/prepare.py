"""`python -m xbml prepare DATASET --raw DIR --out DIR`: the common manifest of a dataset."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("dataset", help="dataset name")
    p.add_argument("--raw", required=True, help="raw dataset folder written by `xbml fetch`")
    p.add_argument("--out", required=True, help="prepared dataset folder (manifest.csv + dataset.json)")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of the training classes held out for model selection (never trained on)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the validation class split")
    p.add_argument(
        "--image-store",
        type=int,
        default=None,
        metavar="SHORT_SIDE",
        help="real datasets: also write the uint8 image store, every image resized to this short side "
        "(the evaluation resize, 256 in config/train/real_images.yaml; see docs/datasets.md)",
    )


def run(args) -> int:
    from xbml.datasets.registry import get_dataset
    from xbml.errors import ConfigError
    from xbml.locks import folder_lock

    dataset = get_dataset(args.dataset)
    if args.image_store is not None:
        if args.image_store < 1:
            raise ConfigError(f"--image-store is {args.image_store}; give the short side in pixels, e.g. 256")
        if not hasattr(dataset, "read_annotations"):
            raise ConfigError(f"--image-store applies to the real datasets; {args.dataset} is already an array store")
    options = {} if args.image_store is None else {"image_store": args.image_store}
    # one writer per folder: a second fetch or prepare would delete the first one's staging folder
    with folder_lock(args.out, "prepared dataset folder"):
        dataset.prepare(args.raw, args.out, val_fraction=args.val_fraction, seed=args.seed, **options)
    return 0
