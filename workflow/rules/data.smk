# Dataset download (or generation) -> DVC versioning -> the common manifest.
# The raw folder has one DVC owner: `dvc add` (data/raw/<dataset>.dvc, git-tracked), run by
# the version rule; dvc.yaml's stages never list it, so the two cannot claim the same path.


rule fetch:
    output:
        directory("data/raw/{dataset}"),
    log:
        "logs/{dataset}/fetch.log",
    benchmark:
        "results/{dataset}/benchmarks/fetch.tsv"
    conda:
        "../../environment.yml"
    params:
        sources=lambda wc: dataset_cfg(wc).get("sources", "config/datasets.yaml"),
        seed=lambda wc: dataset_cfg(wc)["split_seed"],
    shell:
        "python -m xbml fetch {wildcards.dataset:q} --out {output:q} --sources {params.sources:q} "
        "--seed {params.seed:q} > {log:q} 2>&1"


rule version:
    input:
        "data/raw/{dataset}",
    output:
        "results/{dataset}/data_version.json",
    log:
        "logs/{dataset}/version.log",
    conda:
        "../../environment.yml"
    params:
        enabled="" if CONFIG["dvc"]["enabled"] else "--no-dvc",
        push="" if CONFIG["dvc"]["push"] else "--no-push",
        remote=CONFIG["dvc"]["remote"],
        url=CONFIG["dvc"]["url"],
    shell:
        "python -m xbml version {wildcards.dataset:q} --path {input:q} --remote {params.remote:q} "
        "--url {params.url:q} {params.enabled} {params.push} --out {output:q} > {log:q} 2>&1"


rule prepare:
    input:
        raw="data/raw/{dataset}",
        version="results/{dataset}/data_version.json",
    output:
        directory("data/prepared/{dataset}"),
    log:
        "logs/{dataset}/prepare.log",
    conda:
        "../../environment.yml"
    params:
        val=lambda wc: dataset_cfg(wc)["val_fraction"],
        seed=lambda wc: dataset_cfg(wc)["split_seed"],
        # the uint8 image store (datasets.<d>.image_store: its short side), or nothing
        store=lambda wc: (
            f"--image-store {int(dataset_cfg(wc)['image_store'])}"
            if dataset_cfg(wc).get("image_store")
            else ""
        ),
    shell:
        "python -m xbml prepare {wildcards.dataset:q} --raw {input.raw:q} --out {output:q} "
        "--val-fraction {params.val:q} --seed {params.seed:q} {params.store} > {log:q} 2>&1"
