"""The regulariser must learn before its effect can be judged (method.md, "Diagnostic").

On classes that share attributes (tests/conftest.make_attribute_dataset: every class is a set
of 3 of 12 patches, unseen classes are new combinations), prototypes fitted to one sub-batch
can express the other's classes. The authors' formulation (projected, Lipschitz-normalised
locations) then drives the prediction loss well below chance, ln C, within 400 steps; xbml's
first formulation (raw backbone locations by cosine, `xml.features: backbone`) measured 0.98 x
ln C in the same run and stayed at chance on the glyph set for 2,000 iterations. The slim net in
channels_last on one thread (a fixed count: the same trajectory run to run), batch 32 classes x 2
as the glyph default: 0.57 x ln C over the last 40 of 400 steps, in 38 CPU-s (16 x 4 needed 800
steps, 79 CPU-s, for the same ratio). The glyph default's strided net (glyph_convnet_strided)
learns there (0.15-0.17 x ln C over 3,300 glyph iterations) but not on these patches in 800 steps
(0.97 x ln C, measured with 16 x 4): this test is of the formulation, on the net it was
calibrated with.
"""

import json
import math

from conftest import make_attribute_dataset, tiny_train_overrides
from xbml.config import load_config
from xbml.training.trainer import train


def test_the_authors_formulation_drives_the_prediction_loss_below_chance(tmp_path):
    prepared = make_attribute_dataset(tmp_path / "prepared", classes=220, per_class=6)
    overrides = tiny_train_overrides(prepared, iterations=400) + [
        "xml.weight=0.5", "optim.lr=0.003", "sampler.classes_per_batch=32", "sampler.images_per_class=2",
        "train.checkpoint_every=1000",
        "model.backbone=glyph_convnet_slim", "train.channels_last=true",
        "train.threads=1",  # a fixed thread count: the same float sums, so the same trajectory, run to run
    ]
    train(load_config(None, overrides), tmp_path / "run")
    summary = json.loads((tmp_path / "run/train_summary.json").read_text())["regularizers"]["xml"]
    assert summary["chance_loss"] == math.log(110)  # 110 training classes
    assert summary["window_iterations"] == 40
    assert summary["ratio_to_chance"] < 0.9 and summary["learned"] is True, summary
    records = [json.loads(line) for line in (tmp_path / "run/train_log.jsonl").read_text().splitlines()]
    first = sum(r["loss_xml"] for r in records[:40]) / 40
    assert first > 0.95 * summary["chance_loss"]  # it started at chance and learned from there
    assert all(r["xml_chance"] == summary["chance_loss"] for r in records)
    assert summary["label"] == "XML prediction loss" and summary["weight"] == 0.5
    diagnostics = {k: d["value"] for k, d in summary["diagnostics"].items()}
    assert 0 < diagnostics["assign_entropy"] < summary["facts"]["max_entropy"] == math.log(32)
    assert 1 <= diagnostics["effective_prototypes"] <= 32
