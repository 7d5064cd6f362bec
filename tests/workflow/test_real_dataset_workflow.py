"""A miniature CUB-200-2011, in its real format and served over HTTP on 127.0.0.1, through the
whole workflow: download, checksum, DVC, prepare, ResNet training (baseline and XML), evaluation."""

from __future__ import annotations

import json
import os
import sys

import pytest
import yaml

from workflow_copy import make_copy, run

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "datasets"))
from miniature import FileServer, make_cub, md5  # noqa: E402

pytestmark = pytest.mark.slow

TINY_REAL = {
    "base": "real_images.yaml",
    "data": {"image_size": 64, "resize": 72, "workers": 0},
    "model": {"backbone": "resnet18", "pretrained": False, "embedding_dim": 32, "freeze_bn": False},
    "sampler": {"classes_per_batch": 4, "images_per_class": 2},
    "xml": {"num_prototypes": 8},
    "optim": {"lr": 0.0001},
    "train": {"iterations": 6, "eval_every": 3, "checkpoint_every": 3},
    "eval": {"batch_size": 16},
}


def test_miniature_cub_runs_through_the_workflow(tmp_path):
    mini = make_cub(tmp_path / "mini", per_class=4)
    archive = mini.files["CUB_200_2011.tgz"]
    with FileServer() as server:
        url = server.add("/cub/CUB_200_2011.tgz", archive)
        config = {
            "datasets": {
                "cub200": {
                    "train_config": "config/train/tiny_real.yaml",
                    "sources": "config/mini-sources.yaml",
                    "val_fraction": 0.0,
                }
            },
            "methods": {"baseline": {}, "xml": {"xml.weight": 0.1}},
            "seeds": [0],
            "eval_splits": ["test"],
            "report": {"tsne_classes": 4, "retrieval_queries": 2},
        }
        repo = make_copy(tmp_path / "repo", config)
        (repo / "config/train/tiny_real.yaml").write_text(yaml.safe_dump(TINY_REAL))
        sources = {
            "cub200": {
                "download_dir": "data/downloads",
                "files": [{"name": "CUB_200_2011.tgz", "md5": md5(archive), "urls": [url]}],
                "expected_counts": dict(mini.counts),
            }
        }
        (repo / "config/mini-sources.yaml").write_text(yaml.safe_dump(sources))
        run(["snakemake", "--cores", "2", "all"], repo)
        assert server.gets("/cub/CUB_200_2011.tgz"), "the archive was not downloaded from the local server"

    for method in ("baseline", "xml"):
        metrics = json.loads((repo / f"results/cub200/{method}/seed0/metrics_test.json").read_text())
        assert metrics["num_classes"] == len(mini.test_classes)
        assert metrics["num_queries"] == mini.counts["test_images"]
        assert 0.0 <= metrics["map_at_r"] <= 1.0
    summary = json.loads((repo / "results/cub200/xml/seed0/train_summary.json").read_text())
    assert summary["iterations"] == 6
    receipt = json.loads((repo / "results/cub200/data_version.json").read_text())
    assert receipt["dvc_md5"].endswith(".dir")
    assert (repo / "reports/cub200/index.html").exists()
