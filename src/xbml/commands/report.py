"""`python -m xbml report --config config/config.yaml --dataset D --metrics results/D/metrics.csv
--out reports/D/index.html [--captions workflow/report]`: the self-contained HTML report, its PNGs,
a copy of the table and comparisons.csv (the paired statistics, machine-readable)."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--config", default="config/config.yaml", help="workflow config (runs, baseline, report settings)")
    p.add_argument("--dataset", required=True, help="dataset name in the workflow config")
    p.add_argument("--metrics", required=True, help="metrics table written by `xbml aggregate`")
    p.add_argument("--out", required=True, help="HTML file to write; PNGs, metrics.csv and comparisons.csv go beside it")
    p.add_argument("--results", default="results", help="results root holding {dataset}/{run}/seed{seed}/")
    p.add_argument("--prepared", default=None,
                   help="prepared dataset folder for the pictures (default: the one the models were trained on)")
    p.add_argument("--device", default="cpu", help="device for the prototype maps (cpu, cuda, ...)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = the job's share of the CPUs)")
    p.add_argument("--captions", default="workflow/report",
                   help="folder of the figure captions (<figure>.rst), the ones `snakemake --report` shows too "
                        "(default: workflow/report of the working directory)")
    p.add_argument("--allow-missing", action="store_true",
                   help="report a metrics table that lacks configured seeds or holds NaN metrics, naming each on "
                        "the page; without it such a table stops the report")


def run(args) -> int:
    from xbml.reporting.report import build_report

    written = build_report(args.config, args.dataset, args.metrics, args.out, args.results, args.prepared, args.device,
                           allow_missing=args.allow_missing, captions=args.captions, threads=args.threads)
    pngs = [p for p in written if p.suffix == ".png"]
    print(f"wrote {args.out} with {len(pngs)} figures in {written[-1].parent}")
    return 0
