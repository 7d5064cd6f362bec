"""`python -m xbml dvc-pipeline --config config/config.yaml`: write dvc.yaml for `dvc repro`."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--config", default="config/config.yaml", help="workflow config")
    p.add_argument("--out", default="dvc.yaml")
    p.add_argument("--check", action="store_true", help="exit 1 if the file is out of date instead of writing it")


def run(args) -> int:
    from pathlib import Path

    from xbml.workflow.dvc_pipeline import render, sync
    from xbml.workflow.plan import load_workflow_config

    config = load_workflow_config(args.config)
    if args.check:
        current = Path(args.out).read_text() if Path(args.out).exists() else ""
        if current != render(config, args.config):
            print(f"{args.out} is out of date; run `python -m xbml dvc-pipeline --config {args.config}`")
            return 1
        print(f"{args.out} is up to date")
        return 0
    changed = sync(config, args.config, args.out)
    print(f"{'wrote' if changed else 'unchanged:'} {args.out}")
    return 0
