"""`python -m xbml train --config C [--set key=value ...] --out DIR`: train, resuming if a checkpoint exists."""

from __future__ import annotations

import contextlib
import os


def add_arguments(p) -> None:
    p.add_argument("--config", default=None, help="YAML training config (keys: see config/README.md)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set xml.weight=0.1 (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="shorthand for --set seed=N")
    p.add_argument("--out", required=True, help="run folder: model.pt, logs, checkpoints/")
    p.add_argument(
        "--threads", type=int, default=0,
        help="CPUs of this job: torch threads less one per data.workers loader process (default: the job's allocation)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    # labels for run.json; the workflow passes them (workflow/rules/common.smk, train_args)
    p.add_argument("--dataset", default=None, help="dataset name recorded in run.json")
    p.add_argument("--method", default=None, help="method name recorded in run.json")
    p.add_argument("--run-name", default=None, help="run name (method plus swept values) recorded in run.json")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY",
                   help="a --set key this run sweeps; run.json records its resolved, typed value (repeatable)")


def run(args) -> int:
    from xbml.config import dump_config, load_config

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    cfg = load_config(args.config, overrides)
    swept = {key: _lookup(cfg, key) for key in args.sweep}
    if args.print_config:
        print(dump_config(cfg))
        return 0
    from xbml.locks import run_folder_lock
    from xbml.training.trainer import train

    with run_folder_lock(args.out) if _is_writer() else contextlib.nullcontext():
        summary = train(cfg, args.out, threads=args.threads)
        _write_run_info(args, cfg, swept)
    if summary:
        print(f"trained {summary['iterations']} iterations; selected iteration {summary['selected_iteration']} "
              f"({summary['selected_by']}); model at {args.out}/model.pt")
    return 0


def _is_writer() -> bool:
    # under torchrun every rank trains and rank 0 writes; it alone holds the run folder's lock
    return os.environ.get("RANK", "0") == "0"


def _lookup(cfg: dict, key: str):
    from xbml.errors import ConfigError

    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"--sweep {key}: no such key in the resolved training config")
        node = node[part]
    return node


def _write_run_info(args, cfg: dict, swept: dict) -> None:
    """run.json beside model.pt: which run this is, in typed values, so readers need not parse
    folder names; written after training so that it, like model.pt, means a finished run."""
    import json
    from pathlib import Path

    from xbml.atomic import write_json

    if not _is_writer():  # under torchrun every rank trains; one writes
        return
    write_json(Path(args.out) / "run.json", {
        "dataset": args.dataset,
        "method": args.method,
        "run": args.run_name,
        "seed": cfg.get("seed"),
        "swept": swept,
        "config": json.loads(json.dumps(cfg, default=str)),
    })
