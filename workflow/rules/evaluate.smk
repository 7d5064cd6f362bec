# Embedding extraction and FAISS evaluation of each model, then one table per dataset.


# one process per model embeds and evaluates every split: torch, faiss and the model load once
# (four processes per model before, each paying for the imports)
rule embed_evaluate:
    input:
        "results/{dataset}/{run}/{model}/model.pt",
    output:
        embeddings=split_files("results/{dataset}/{run}/{model}/embeddings_{split}.npz"),
        metrics=split_files("results/{dataset}/{run}/{model}/metrics_{split}.json"),
    log:
        "logs/{dataset}/embed_evaluate/{run}/{model}.log",
    benchmark:
        "results/{dataset}/benchmarks/embed_evaluate/{run}/{model}.tsv"
    conda:
        "../../environment.yml"
    params:
        splits=SPLIT_WORDS,
        out=subpath(input[0], parent=True),
    shell:
        "python -m xbml embed-evaluate --model {input:q} --split {params.splits} --threads {threads} "
        "--no-progress --out-dir {params.out:q} > {log:q} 2>&1"


# the fold models' concatenated test embeddings (mlrc_4fold, below)
rule evaluate:
    input:
        "results/{dataset}/{run}/{model}/embeddings_{split}.npz",
    output:
        "results/{dataset}/{run}/{model}/metrics_{split}.json",
    log:
        "logs/{dataset}/evaluate/{run}/{model}_{split}.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate/{run}/{model}_{split}.tsv"
    wildcard_constraints:
        model=CONCATENATED_PATTERN,
    conda:
        "../../environment.yml"
    shell:
        "python -m xbml evaluate {input:q} --threads {threads} --out {output:q} > {log:q} 2>&1"


# mlrc_4fold: a run's fold models side by side, each L2-normalised (MLRC's concatenated
# embedding), evaluated by the rule above; the held-out folds differ per model, so only test
rule concatenate_folds:
    input:
        embeddings=fold_embeddings,
    output:
        "results/{dataset}/{run}/seed{seed}-concatenated/embeddings_{split}.npz",
    log:
        "logs/{dataset}/concatenate_folds/{run}/seed{seed}_{split}.log",
    wildcard_constraints:
        split="test",
    conda:
        "../../environment.yml"
    shell:
        "python -m xbml concatenate {input.embeddings:q} --out {output:q} > {log:q} 2>&1"


rule aggregate:
    input:
        lambda wc: metrics_of(wc.dataset),
    output:
        "results/{dataset}/metrics.csv",
    log:
        "logs/{dataset}/aggregate.log",
    conda:
        "../../environment.yml"
    params:
        config=CONFIG_PATH,
        # the evaluated splits decide the table's rows: a change of eval_splits reruns it
        splits=SPLIT_WORDS,
    shell:
        "python -m xbml aggregate --config {params.config:q} --dataset {wildcards.dataset:q} "
        "--out {output:q} > {log:q} 2>&1"


# What DVC shows (`dvc metrics show`, `dvc plots show`, `dvc exp show`): small files outside the
# cached results/ folder, since DVC refuses a metrics file inside another output. The curves are
# one rule per run, not directory() outputs, whose .snakemake_timestamp `dvc plots` cannot read.
rule dvc_curves:
    input:
        train="results/{dataset}/{run}/{model}/train_log.jsonl",
        val="results/{dataset}/{run}/{model}/val_log.jsonl",
    output:
        train="metrics/{dataset}/train_curves/{run}_{model}.csv",
        val="metrics/{dataset}/val_curves/{run}_{model}.csv",
    log:
        "logs/{dataset}/dvc_curves/{run}/{model}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m xbml dvc-pipeline --curve {input.train:q} {output.train:q} "
        "--curve {input.val:q} {output.val:q} > {log:q} 2>&1"


rule dvc_metrics:
    input:
        metrics="results/{dataset}/metrics.csv",
        curves=lambda wc: curves_of(wc.dataset),
    output:
        metrics="metrics/{dataset}/metrics.json",
        runs="metrics/{dataset}/runs.csv",
    log:
        "logs/{dataset}/dvc_metrics.log",
    conda:
        "../../environment.yml"
    params:
        config=CONFIG_PATH,
        out=subpath(output.metrics, parent=True),
    shell:
        "python -m xbml dvc-pipeline --config {params.config:q} --dataset {wildcards.dataset:q} "
        "--metrics {input.metrics:q} --out {params.out:q} > {log:q} 2>&1"


# a second of CPU each: not worth a cluster job (report.smk lists the other local rules)
localrules:
    dvc_curves,
    dvc_metrics,
