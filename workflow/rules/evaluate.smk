# FAISS evaluation of each run's embeddings, then one table per dataset.


rule evaluate:
    input:
        "results/{dataset}/{run}/seed{seed}/embeddings_{split}.npz",
    output:
        "results/{dataset}/{run}/seed{seed}/metrics_{split}.json",
    log:
        "logs/{dataset}/evaluate/{run}/seed{seed}_{split}.log",
    conda:
        "../../environment.yml"
    benchmark:
        "results/{dataset}/benchmarks/evaluate/{run}/seed{seed}_{split}.tsv"
    threads: res("evaluate", "threads")
    resources:
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
    shell:
        "python -m xbml evaluate {input:q} --threads {threads} --out {output:q} > {log:q} 2>&1"


rule aggregate:
    input:
        lambda wc: metrics_of(wc.dataset),
    output:
        "results/{dataset}/metrics.csv",
    params:
        config=CONFIG_PATH,
    log:
        "logs/{dataset}/aggregate.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m xbml aggregate --config {params.config:q} --dataset {wildcards.dataset:q} "
        "--out {output:q} > {log:q} 2>&1"
