# Training with and without the cross-batch regulariser. Checkpoints live in
# checkpoints/ beside the outputs (not an output: they survive a killed job, and a
# rerun resumes from them); the outputs appear only when training completes.


rule train:
    input:
        "data/prepared/{dataset}",
    output:
        model="results/{dataset}/{run}/{model}/model.pt",
        train_log="results/{dataset}/{run}/{model}/train_log.jsonl",
        val_log="results/{dataset}/{run}/{model}/val_log.jsonl",
        summary="results/{dataset}/{run}/{model}/train_summary.json",
        run_info="results/{dataset}/{run}/{model}/run.json",
    log:
        "logs/{dataset}/train/{run}/{model}.log",
    benchmark:
        "results/{dataset}/benchmarks/train/{run}/{model}.tsv"
    conda:
        "../../environment.yml"
    params:
        config=lambda wc: dataset_cfg(wc)["train_config"],
        overrides=train_args,
        out=subpath(output.model, parent=True),
        launcher=train_launcher,
    shell:
        "{params.launcher} -m xbml train --config {params.config:q} {params.overrides} "
        "--threads {threads} --out {params.out:q} > {log:q} 2>&1"

