"""A regulariser defined here only, registered as a plugin (XBML_PLUGINS), through train ->
embed-evaluate -> aggregate -> report by the CLI: its term, diagnostics and chance level reach the
logs, the summary and the page with no other source file touched."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from xbml.regularizers import Regularizer

HERE = Path(__file__).resolve().parent


class SpreadRegularizer(Regularizer):
    """Pulls the batch's mean embedding towards 0: loss = |mean_i e_i|^2 (in [0, 1]; 1/b for b random
    unit vectors is its level without any structure, which stands in for a chance level here)."""

    name = "spread"
    label = "spread penalty"
    defaults = {"power": 2.0}
    diagnostics = {"mean_norm": "norm of the batch-mean embedding"}

    @classmethod
    def domains(cls):
        from xbml.config import POSITIVE

        intervals, choices = super().domains()
        intervals["power"] = POSITIVE
        return intervals, choices

    @classmethod
    def build(cls, block, context):
        batch = context.cfg["sampler"]["classes_per_batch"] * context.cfg["sampler"]["images_per_class"]
        return cls(block["power"], batch)

    def __init__(self, power: float, batch: int):
        super().__init__()
        self.power, self.batch = power, batch

    @property
    def chance(self) -> float:
        return 1.0 / self.batch

    def forward(self, batch):
        norm = batch.output.embedding.float().mean(dim=0).norm()
        return {"loss": norm ** self.power, "mean_norm": norm.detach()}

    def facts(self) -> dict:
        return {"power": self.power}


# what XBML_PLUGINS registers
xbml_regularizers = [SpreadRegularizer]


def _xbml(*args, cwd, env=None) -> subprocess.CompletedProcess:
    from conftest import PYTHON

    proc = subprocess.run([PYTHON, "-m", "xbml", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return proc


def test_a_plugin_regulariser_runs_through_every_step(tmp_path):
    from conftest import ROOT, make_blob_dataset, tiny_train_overrides

    plugin = {"XBML_PLUGINS": Path(__file__).stem,
              "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    prepared = make_blob_dataset(tmp_path / "prepared", classes=24, per_class=8, val_fraction=0.25)
    results = tmp_path / "results"
    workflow = {"datasets": {"syn": {"train_config": str(tmp_path / "train.yaml")}},
                "methods": {"baseline": {}, "spread": {"spread.weight": 0.3}}, "baseline": "baseline", "seeds": [0],
                "report": {"retrieval_queries": 0, "tsne_classes": 0}}
    (tmp_path / "train.yaml").write_text("{}\n")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(workflow))
    for method, sets in (("baseline", []), ("spread", ["spread.weight=0.3"])):
        for seed in (0,):  # one seed: the plumbing, not the statistics, is under test here
            out = results / "syn" / method / f"seed{seed}"
            words = [w for s in [*tiny_train_overrides(prepared, 16), "train.eval_every=8", *sets]
                     for w in ("--set", s)]
            _xbml("train", *words, "--seed", seed, "--dataset", "syn", "--method", method, "--run-name", method,
                  "--out", out, cwd=tmp_path, env=plugin)
            _xbml("embed-evaluate", "--model", out / "model.pt", "--split", "val", "test", "--no-progress",
                  cwd=tmp_path)
    run = results / "syn" / "spread" / "seed0"
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert {"loss_spread", "spread_mean_norm", "spread_chance"} <= set(records[0])
    assert all(r["spread_chance"] == 1 / 24 for r in records)
    # the objective combined it as (1 - w) * base + w * term
    for r in records:
        assert r["loss"] == pytest.approx(0.7 * r["loss_base"] + 0.3 * r["loss_spread"], rel=1e-5)
    summary = json.loads((run / "train_summary.json").read_text())["regularizers"]["spread"]
    assert summary["label"] == "spread penalty" and summary["weight"] == 0.3 and summary["facts"] == {"power": 2.0}
    tail = records[-max(1, len(records) // 10):]
    assert summary["final_loss"] == pytest.approx(sum(r["loss_spread"] for r in tail) / len(tail))
    assert summary["ratio_to_chance"] == pytest.approx(summary["final_loss"] * 24)
    assert json.loads((results / "syn/baseline/seed0/train_summary.json").read_text())["regularizers"] == {}
    # without the plugin the key is unknown, by name
    bad = subprocess.run([__import__("sys").executable, "-m", "xbml", "train", "--set", "spread.weight=0.3",
                          "--out", tmp_path / "nope"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown config key 'spread'" in bad.stderr

    table = tmp_path / "metrics.csv"
    _xbml("aggregate", "--config", tmp_path / "config.yaml", "--dataset", "syn", "--results", results, "--out", table,
          cwd=ROOT)
    assert len(pd.read_csv(table)) == 2 * 2  # 2 runs x (val, test)
    page = tmp_path / "report" / "index.html"
    _xbml("report", "--config", tmp_path / "config.yaml", "--dataset", "syn", "--results", results, "--metrics", table,
          "--out", page, cwd=ROOT)
    text = page.read_text()
    block = text[text.index('id="regularizer-diagnostics"'):]
    assert "spread: the spread penalty" in block[:block.index("</ul>")]
    rows = text[text.index('id="regularizer-seeds"'):]
    assert "norm of the batch-mean embedding" in rows[:rows.index("</table>")]
    assert rows[:rows.index("</table>")].count("<tr") - 1 == 1  # one row per seed
    assert (page.parent / "regularizer_losses.png").read_bytes()[:4] == b"\x89PNG"
    assert 'id="fig-regularizer_losses"' in text and math.isfinite(summary["final_loss"])
    # the one run besides the baseline is the primary comparison, said to be a default
    csv = pd.read_csv(page.parent / "comparisons.csv")
    assert csv.family.iloc[0] == "primary" and csv.run.iloc[0] == "spread"
    assert "not declared" in text[text.index('id="primary"'):]


def test_a_plugin_that_cannot_be_imported_is_named(tmp_path):
    from conftest import PYTHON

    proc = subprocess.run([PYTHON, "-m", "xbml", "train", "--out", tmp_path / "x"], capture_output=True, text=True,
                          env={**os.environ, "XBML_PLUGINS": "no_such_plugin_module"}, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "XBML_PLUGINS names the module 'no_such_plugin_module', which cannot be imported" in proc.stderr


def test_the_plugin_class_is_a_real_module_with_a_gradient():
    reg = SpreadRegularizer(2.0, 8)
    emb = torch.nn.functional.normalize(torch.randn(8, 4), dim=1).requires_grad_(True)

    class Out:
        embedding = emb

    from xbml.regularizers import Batch

    terms = reg(Batch(Out, torch.arange(8), 4, 0, None, None))
    terms["loss"].backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
