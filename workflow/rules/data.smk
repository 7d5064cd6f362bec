# Dataset download (or generation) -> DVC versioning -> the common manifest.


rule fetch:
    output:
        directory("data/raw/{dataset}"),
    params:
        sources=lambda wc: dataset_cfg(wc).get("sources", "config/datasets.yaml"),
        seed=lambda wc: dataset_cfg(wc)["split_seed"],
    log:
        "logs/{dataset}/fetch.log",
    conda:
        "../../environment.yml"
    benchmark:
        "results/{dataset}/benchmarks/fetch.tsv"
    threads: 2
    shell:
        "python -m xbml fetch {wildcards.dataset} --out {output} --sources {params.sources} "
        "--seed {params.seed} > {log} 2>&1"


rule version:
    input:
        "data/raw/{dataset}",
    output:
        "results/{dataset}/data_version.json",
    params:
        enabled="" if CONFIG["dvc"]["enabled"] else "--no-dvc",
        push="" if CONFIG["dvc"]["push"] else "--no-push",
        remote=CONFIG["dvc"]["remote"],
        url=CONFIG["dvc"]["url"],
    log:
        "logs/{dataset}/version.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m xbml version {wildcards.dataset} --path {input} --remote {params.remote} "
        "--url {params.url} {params.enabled} {params.push} --out {output} > {log} 2>&1"


rule prepare:
    input:
        raw="data/raw/{dataset}",
        version="results/{dataset}/data_version.json",
    output:
        directory("data/prepared/{dataset}"),
    params:
        val=lambda wc: dataset_cfg(wc)["val_fraction"],
        seed=lambda wc: dataset_cfg(wc)["split_seed"],
    log:
        "logs/{dataset}/prepare.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m xbml prepare {wildcards.dataset} --raw {input.raw} --out {output} "
        "--val-fraction {params.val} --seed {params.seed} > {log} 2>&1"
