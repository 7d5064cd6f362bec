"""`python -m xbml train --config C [--set key=value ...] --out DIR`: train, resuming if a checkpoint exists."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--config", default=None, help="YAML training config (keys: see config/README.md)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set xml.weight=0.1 (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="shorthand for --set seed=N")
    p.add_argument("--out", required=True, help="run folder: model.pt, logs, checkpoints/")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: the job's allocation)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args) -> int:
    from xbml.config import dump_config, load_config

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    cfg = load_config(args.config, overrides)
    if args.print_config:
        print(dump_config(cfg))
        return 0
    from xbml.training.trainer import train

    summary = train(cfg, args.out, threads=args.threads)
    if summary:
        print(f"trained {summary['iterations']} iterations; selected iteration {summary['selected_iteration']} "
              f"({summary['selected_by']}); model at {args.out}/model.pt")
    return 0
