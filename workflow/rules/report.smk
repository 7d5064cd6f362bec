# The seaborn/HTML report of a dataset (reports/<dataset>/), also shown by `snakemake --report`.


rule report:
    input:
        metrics="results/{dataset}/metrics.csv",
        version="results/{dataset}/data_version.json",
    output:
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
    params:
        config=CONFIG_PATH,
    log:
        "logs/{dataset}/report.log",
    conda:
        "../../environment.yml"
    benchmark:
        "results/{dataset}/benchmarks/report.tsv"
    shell:
        "python -m xbml report --config {params.config:q} --dataset {wildcards.dataset:q} "
        "--metrics {input.metrics:q} --out {output.html:q} > {log:q} 2>&1"


# cheap, or (fetch) needing the internet that cluster compute nodes often lack
localrules:
    fetch,
    version,
    aggregate,
    report,
