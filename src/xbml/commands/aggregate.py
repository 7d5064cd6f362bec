"""`python -m xbml aggregate --config config/config.yaml --dataset D --out results/D/metrics.csv`."""

from __future__ import annotations

ALLOW_MISSING_HELP = (
    "go on when a configured seed has no metrics file (its row is left out) or an invalid metric "
    "(written as NaN); each is logged, and the report names them. Without it either stops aggregate."
)


def add_arguments(p) -> None:
    p.add_argument("--config", default="config/config.yaml", help="workflow config (the runs to collect)")
    p.add_argument("--dataset", required=True, help="dataset name in the workflow config")
    p.add_argument("--results", default="results", help="results root holding {dataset}/{run}/seed{seed}/")
    p.add_argument("--out", required=True, help="metrics table to write (.csv)")
    p.add_argument("--allow-missing", action="store_true", help=ALLOW_MISSING_HELP)


def run(args) -> int:
    from xbml.atomic import write_text
    from xbml.reporting.tables import aggregate_rows
    from xbml.workflow.plan import load_workflow_config

    config = load_workflow_config(args.config)
    table = aggregate_rows(config, args.dataset, args.results, allow_missing=args.allow_missing)
    write_text(args.out, table.to_csv(index=False))
    print(f"wrote {len(table)} rows ({table['run'].nunique()} runs x seeds x splits) to {args.out}")
    return 0
