# The seaborn/HTML report of a dataset (reports/<dataset>/), also shown by `snakemake --report`.

import os

from xbml.reporting.figures import FIGURES


# every figure of the page is declared (the report writes a placeholder for one that does not
# apply), so `snakemake --report` holds them all, captioned by the same .rst files as the page
rule report:
    input:
        unpack(report_inputs),  # runs, embeddings, benchmarks: computed once per job
        metrics="results/{dataset}/metrics.csv",
        version="results/{dataset}/data_version.json",
        prepared="data/prepared/{dataset}",
        config=CONFIG_PATH,
        captions=CAPTION_FILES,
    output:
        **{
            Path(name).stem: report(
                f"reports/{{dataset}}/{name}",
                caption=f"../report/{Path(name).stem}.rst",
                category="{dataset}",
                labels={"figure": title},
            )
            for name, title in FIGURES.items()
        },
        html=report(
            "reports/{dataset}/index.html",
            caption="../report/index.rst",
            category="{dataset}",
            labels={"figure": "HTML report"},
        ),
        csv=report(
            "reports/{dataset}/metrics.csv",
            caption="../report/metrics.rst",
            category="{dataset}",
            labels={"figure": "metrics table"},
        ),
        comparisons=report(
            "reports/{dataset}/comparisons.csv",
            caption="../report/comparisons.rst",
            category="{dataset}",
            labels={"figure": "paired comparisons"},
        ),
    log:
        "logs/{dataset}/report.log",
    benchmark:
        "results/{dataset}/benchmarks/report.tsv"
    conda:
        "../../environment.yml"
    params:
        # the folder of the caption files, from the inputs (the lint's advice for path prefixes)
        captions=lambda wc, input: os.path.dirname(input.captions[0]),
    shell:
        "python -m xbml report --config {input.config:q} --dataset {wildcards.dataset:q} "
        "--metrics {input.metrics:q} --prepared {input.prepared:q} --captions {params.captions:q} "
        "--out {output.html:q} > {log:q} 2>&1"


# cheap, or (fetch) needing the internet that cluster compute nodes often lack
localrules:
    fetch,
    version,
    aggregate,
    report,
