"""A miniature CUB-200-2011, in its real format and served over HTTP on 127.0.0.1, through the
whole workflow under MLRC's 4-fold protocol: download, checksum, DVC, prepare (with the uint8
image store), training of 4 fold models (baseline and XML) on the store, evaluation concatenated
and separately, the report. The fold models are the glyph net on 3-channel images: the protocol is
what is tested here, and torchvision's ResNet-18 costs each of the 16 training and embedding jobs
seconds more (ResNet-18 trains on real images in tests/datasets/test_device_decode.py)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from xbml.evaluation.embeddings_file import load_embeddings

from workflow_copy import make_copy, run

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "datasets"))
from miniature import FileServer, make_cub, md5  # noqa: E402

pytestmark = pytest.mark.slow

TINY_REAL = {
    "base": "real_images.yaml",
    "data": {"image_size": 64, "resize": 72, "workers": 0},
    "model": {"backbone": "glyph_convnet_strided", "pretrained": False, "embedding_dim": 32, "freeze_bn": False},
    "sampler": {"classes_per_batch": 4, "images_per_class": 2},
    "xml": {"num_prototypes": 8},
    "optim": {"lr": 0.0001},
    "train": {"iterations": 6, "eval_every": 3, "checkpoint_every": 3},
    "eval": {"batch_size": 16},
}


def test_miniature_cub_runs_the_mlrc_4fold_protocol_through_the_workflow(tmp_path):
    """Download, checksum, DVC, prepare, then per method 4 fold models (baseline and XML), their
    test embeddings concatenated, and a report with both rows."""
    mini = make_cub(tmp_path / "mini", per_class=4, train_classes=8)
    archive = mini.files["CUB_200_2011.tgz"]
    with FileServer() as server:
        url = server.add("/cub/CUB_200_2011.tgz", archive)
        config = {
            "datasets": {
                "cub200": {
                    "train_config": "config/train/tiny_real.yaml",
                    "sources": "config/mini-sources.yaml",
                    "protocol": "mlrc_4fold",
                    "val_fraction": 0.0,
                    "image_store": 72,  # = data.resize: training and evaluation read the prepared store
                }
            },
            "methods": {"baseline": {}, "xml": {"xml.weight": 0.1}},
            "seeds": [0],
            "eval_splits": ["val", "test"],
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

    store = json.loads((repo / "data/prepared/cub200/dataset.json").read_text())["image_store"]
    assert (repo / "data/prepared/cub200" / store / "images.u8").is_file()
    table = pd.read_csv(repo / "results/cub200/metrics.csv")
    for method in ("baseline", "xml"):
        root = repo / f"results/cub200/{method}"
        held_out = []
        for k in range(4):
            info = json.loads((root / f"seed0-fold{k}/run.json").read_text())
            assert info["config"]["data"]["fold"] == k
            held_out.append(set(load_embeddings(root / f"seed0-fold{k}/embeddings_val.npz").labels.tolist()))
        # each fold model validated on its own fold: class-disjoint folds covering the training classes
        assert all(len(f) == 2 for f in held_out)
        assert set().union(*held_out) == set(mini.train_classes)
        tests = [load_embeddings(root / f"seed0-fold{k}/embeddings_test.npz") for k in range(4)]
        joined = load_embeddings(root / "seed0-concatenated/embeddings_test.npz")
        expected = np.concatenate([t.embeddings / np.linalg.norm(t.embeddings, axis=1, keepdims=True) for t in tests], 1)
        assert joined.embeddings.shape == (mini.counts["test_images"], 4 * TINY_REAL["model"]["embedding_dim"])
        np.testing.assert_allclose(joined.embeddings, expected, rtol=1e-6, atol=1e-7)
        concatenated = json.loads((root / "seed0-concatenated/metrics_test.json").read_text())
        separated = [json.loads((root / f"seed0-fold{k}/metrics_test.json").read_text()) for k in range(4)]
        rows = table[table["run"] == method].set_index("split")
        assert set(rows.index) == {"val", "test", "test_separated"}
        assert rows.loc["test", "map_at_r"] == pytest.approx(concatenated["map_at_r"])
        assert rows.loc["test_separated", "map_at_r"] == pytest.approx(np.mean([m["map_at_r"] for m in separated]))
        assert rows.loc["test", "eval_embedding_dim"] == 4 * rows.loc["test_separated", "eval_embedding_dim"]
    receipt = json.loads((repo / "results/cub200/data_version.json").read_text())
    assert receipt["dvc_md5"].endswith(".dir")
    page = (repo / "reports/cub200/index.html").read_text()
    assert "Test, fold models concatenated" in page and "Test, fold models separately" in page
    comparisons = pd.read_csv(repo / "reports/cub200/comparisons.csv")
    assert {"test", "test_separated", "val"} <= set(comparisons["split"])
    assert run(["snakemake", "--cores", "2", "-n", "all"], repo).stdout.count("Nothing to be done") == 1
