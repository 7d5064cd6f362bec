"""`python -m xbml aggregate --config config/config.yaml --dataset D --out results/D/metrics.csv`."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--config", default="config/config.yaml", help="workflow config (the runs to collect)")
    p.add_argument("--dataset", required=True, help="dataset name in the workflow config")
    p.add_argument("--results", default="results", help="results root holding {dataset}/{run}/seed{seed}/")
    p.add_argument("--out", required=True, help="metrics table to write (.csv)")


def run(args) -> int:
    from xbml.atomic import write_text
    from xbml.reporting.tables import aggregate_rows
    from xbml.workflow.plan import load_workflow_config

    config = load_workflow_config(args.config)
    table = aggregate_rows(config, args.dataset, args.results)
    write_text(args.out, table.to_csv(index=False))
    print(f"wrote {len(table)} rows ({table['run'].nunique()} runs x seeds x splits) to {args.out}")
    return 0
