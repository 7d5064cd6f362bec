"""`python -m xbml dvc-pipeline`: the files DVC shows of a dataset (xbml.workflow.dvc_pipeline).

    python -m xbml dvc-pipeline --config config/config.yaml --dataset D --metrics results/D/metrics.csv --out metrics/D
    python -m xbml dvc-pipeline --curve RUN/train_log.jsonl metrics/D/train_curves/RUN_seedK.csv

dvc.yaml itself is hand-written and static: its stage runs Snakemake, which owns the DAG.
"""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--config", default="config/config.yaml", help="workflow config")
    p.add_argument("--dataset", default=None, help="write metrics.json and runs.csv of this dataset's runs")
    p.add_argument("--out", default=None, help="folder for them (metrics/<dataset>)")
    p.add_argument("--metrics", default=None, help="the dataset's metrics table (default results/<dataset>/metrics.csv)")
    p.add_argument("--curve", nargs=2, action="append", default=[], metavar=("JSONL", "CSV"),
                   help="convert a run's train/val log to CSV for `dvc plots` (repeatable)")


def run(args) -> int:
    from xbml.errors import XbmlError
    from xbml.workflow.dvc_pipeline import jsonl_to_csv, summarize

    if not args.curve and not (args.dataset and args.out):
        raise XbmlError("dvc-pipeline: give --dataset D --out metrics/D, or --curve JSONL CSV")
    for source, out in args.curve:
        print(f"{out}: {jsonl_to_csv(source, out)} rows from {source}")
    if args.dataset:
        if not args.out:
            raise XbmlError("dvc-pipeline --dataset needs --out (e.g. metrics/<dataset>)")
        from xbml.workflow.plan import load_workflow_config

        metrics = args.metrics or f"results/{args.dataset}/metrics.csv"
        summary = summarize(load_workflow_config(args.config), args.dataset, args.out, metrics)
        print(f"{args.dataset}: DVC metrics of {len(summary)} run settings in {args.out}")
    return 0
