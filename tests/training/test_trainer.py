"""Training behaviour on a small prepared dataset, through the real trainer and CLI."""

import signal
import subprocess

import numpy as np
import pytest
import torch

from conftest import KILL_AFTER_CHECKPOINT, PYTHON, ROOT, make_blob_dataset, tiny_train_overrides
from xbml.config import load_config
from xbml.errors import CheckpointError, DataError, TrainingDiverged
from xbml.training.trainer import Trainer, train


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_xml_at_weight_zero_reproduces_the_baseline_step_for_step(blob_dataset, tmp_path):
    base = tiny_train_overrides(blob_dataset, iterations=10)
    train(load_config(None, base), tmp_path / "baseline")
    train(load_config(None, base + ["xml.weight=0.0", "xml.force_compute=true"]), tmp_path / "xml0")
    _assert_same_weights(_weights(tmp_path / "baseline/model.pt"), _weights(tmp_path / "xml0/model.pt"))
    # and the regulariser really ran in the second one
    log = (tmp_path / "xml0/train_log.jsonl").read_text()
    assert '"loss_xml"' in log
    # while a positive weight changes the trajectory
    train(load_config(None, base + ["xml.weight=0.3"]), tmp_path / "xml")
    a, b = _weights(tmp_path / "baseline/model.pt"), _weights(tmp_path / "xml/model.pt")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_different_seed_different(blob_dataset, tmp_path):
    cfg = tiny_train_overrides(blob_dataset, iterations=6) + ["xml.weight=0.1"]
    train(load_config(None, cfg), tmp_path / "a")
    train(load_config(None, cfg), tmp_path / "b")
    train(load_config(None, cfg + ["seed=1"]), tmp_path / "c")
    _assert_same_weights(_weights(tmp_path / "a/model.pt"), _weights(tmp_path / "b/model.pt"))
    a, c = _weights(tmp_path / "a/model.pt"), _weights(tmp_path / "c/model.pt")
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_killed_run_resumes_from_its_checkpoint_and_ends_identical(tmp_path):
    import os

    prepared = make_blob_dataset(tmp_path / "prepared")
    overrides = tiny_train_overrides(prepared, iterations=60) + ["xml.weight=0.1", "train.checkpoint_every=5"]
    train(load_config(None, overrides), tmp_path / "straight")

    args = ["train", "--out", str(tmp_path / "killed")] + [w for o in overrides for w in ("--set", o)]
    killed = subprocess.run([PYTHON, "-c", KILL_AFTER_CHECKPOINT, *args], cwd=ROOT, capture_output=True,
                            env={**os.environ, "KILL_AT": "10"})
    assert killed.returncode == -signal.SIGKILL
    ckpt = tmp_path / "killed/checkpoints/last.pt"
    assert torch.load(ckpt, weights_only=True)["iteration"] == 10
    assert not (tmp_path / "killed/model.pt").exists()
    assert not (tmp_path / "killed/train_log.jsonl").exists()  # outputs appear only when complete

    out = subprocess.run([PYTHON, "-m", "xbml", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    assert f"resumed from {ckpt} at iteration 10" in out.stderr
    _assert_same_weights(_weights(tmp_path / "straight/model.pt"), _weights(tmp_path / "killed/model.pt"))
    # the log holds each iteration once, as if never interrupted
    lines = (tmp_path / "killed/train_log.jsonl").read_text().splitlines()
    assert len(lines) == 60
    assert (tmp_path / "straight/train_log.jsonl").read_text().count("\n") == 60


def test_a_checkpoint_past_or_off_the_requested_schedule_is_refused_by_name(blob_dataset, tmp_path):
    base = tiny_train_overrides(blob_dataset, iterations=8)
    train(load_config(None, base), tmp_path / "run")
    with pytest.raises(CheckpointError, match="at iteration 8, past train.iterations=4; rerun with train.iterations >= 8"):
        train(load_config(None, tiny_train_overrides(blob_dataset, iterations=4)), tmp_path / "run")
    cosine = base + ["optim.schedule=cosine"]
    train(load_config(None, cosine), tmp_path / "cosine")
    longer = tiny_train_overrides(blob_dataset, iterations=16) + ["optim.schedule=cosine"]
    with pytest.raises(CheckpointError, match="cosine schedule planned for 8 iterations, but train.iterations=16"):
        train(load_config(None, longer), tmp_path / "cosine")
    assert torch.load(tmp_path / "cosine/checkpoints/last.pt", weights_only=True)["iteration"] == 8  # untouched


def test_the_next_run_removes_what_a_kill_during_a_checkpoint_write_left(blob_dataset, tmp_path):
    stale = tmp_path / "run/checkpoints/.last.pt.k1ll3d_x.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a checkpoint")
    keep = tmp_path / "run/checkpoints/notes.tmp"
    keep.write_text("not ours")
    train(load_config(None, tiny_train_overrides(blob_dataset, iterations=4)), tmp_path / "run")
    assert not stale.exists() and keep.exists()


def test_frozen_batchnorm_keeps_its_parameters_and_statistics(blob_dataset, tmp_path):
    cfg = load_config(None, tiny_train_overrides(blob_dataset, iterations=6) + ["model.freeze_bn=true", "xml.weight=0.2"])
    trainer = Trainer(cfg, tmp_path / "run")
    bn_names = [n for n, m in trainer.objective.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bn = {k: v.clone() for k, v in trainer.objective.model.state_dict().items() if k.rsplit(".", 1)[0] in bn_names}
    assert bn and any(k.endswith("running_mean") for k in bn)
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    frozen = [p for m in trainer.objective.model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()]
    assert frozen and not any(p.requires_grad or id(p) in optimised for p in frozen)  # no step, no weight decay
    trainer.fit()
    after = trainer.objective.model.state_dict()
    for k, v in bn.items():
        assert torch.equal(after[k], v), k
    conv = "backbone.features.0.0.weight"  # while the rest of the network did learn
    assert not torch.equal(after[conv], Trainer(cfg, tmp_path / "fresh").objective.model.state_dict()[conv])


def test_gradient_clipping_bounds_the_global_norm(blob_dataset, tmp_path):
    cfg = load_config(None, tiny_train_overrides(blob_dataset, iterations=1) + ["optim.clip_grad_norm=1e-3"])
    trainer = Trainer(cfg, tmp_path / "run")
    norms = []
    step = trainer.optimizer.step

    def record_then_step(*a, **kw):
        norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.trainable if p.grad is not None])))
        return step(*a, **kw)

    trainer.optimizer.step = record_then_step
    trainer.fit()
    assert norms and norms[0].item() == pytest.approx(1e-3, rel=1e-4)


def test_corrupt_checkpoint_is_reported_not_silently_restarted(blob_dataset, tmp_path):
    cfg = load_config(None, tiny_train_overrides(blob_dataset, iterations=4))
    ckpt = tmp_path / "run/checkpoints/last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable.*delete it"):
        train(cfg, tmp_path / "run")
    assert ckpt.read_bytes() == b"not a checkpoint"


def test_checkpoint_of_another_config_is_refused(blob_dataset, tmp_path):
    train(load_config(None, tiny_train_overrides(blob_dataset, iterations=4)), tmp_path / "run")
    other = load_config(None, tiny_train_overrides(blob_dataset, iterations=8) + ["optim.lr=0.5"])
    with pytest.raises(CheckpointError, match="different configuration"):
        train(other, tmp_path / "run")
    # more iterations of the same config is a legitimate continuation
    longer = load_config(None, tiny_train_overrides(blob_dataset, iterations=8))
    assert train(longer, tmp_path / "run")["iterations"] == 8


def test_nan_loss_stops_with_the_iteration_and_keeps_the_last_good_checkpoint(blob_dataset, tmp_path):
    cfg = load_config(None, tiny_train_overrides(blob_dataset, iterations=12))
    trainer = Trainer(cfg, tmp_path / "run")
    original = trainer.objective.forward

    def poisoned(images, labels, split, iteration=0):
        terms = original(images, labels, split, iteration)
        if trainer.iteration == 6:  # the 7th step diverges
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    trainer.objective.forward = poisoned
    with pytest.raises(TrainingDiverged, match="at iteration 7.*iteration 4"):
        trainer.fit()
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert state["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in state["objective"].values() if v.is_floating_point())


def test_missing_pretrained_weights_name_the_expected_path(tmp_path):
    from xbml.errors import ConfigError
    from xbml.models import build_backbone

    with pytest.raises(ConfigError, match=r"does not exist\. Download .*resnet18.*place it at"):
        build_backbone("resnet18", 3, pretrained=True, weights_path=str(tmp_path / "nope.pth"))


def test_pretrained_weights_load_from_a_local_file(tmp_path):
    import torchvision

    from xbml.models import build_backbone

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    net = build_backbone("resnet18", 3, pretrained=True, weights_path=str(path))
    assert torch.equal(net.stem[0].weight, reference.conv1.weight)
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)


def test_a_fold_model_trains_on_the_other_folds_and_validates_on_its_own(blob_dataset, tmp_path):
    from xbml.datasets.manifest import read_manifest
    from xbml.inference import split_dataset

    manifest = read_manifest(blob_dataset)
    cfg = load_config(None, tiny_train_overrides(blob_dataset, iterations=2) + ["data.fold=1"])
    trainer = Trainer(cfg, tmp_path / "fold1")
    train_rows = manifest.indices("train")
    fold_of = dict(zip(train_rows.tolist(), manifest.folds[train_rows].tolist()))
    trained = set(manifest.labels[trainer.train_set.rows].tolist())
    validated = set(manifest.labels[trainer.val_rows].tolist())
    assert validated and trained and not (trained & validated)
    assert {fold_of[r] for r in trainer.val_rows.tolist()} == {1}
    assert 1 not in {fold_of[r] for r in trainer.train_set.rows.tolist()}
    assert trained | validated == set(manifest.labels[train_rows].tolist())
    # `xbml embed --split val` of a fold model embeds the fold it was validated on
    np.testing.assert_array_equal(split_dataset(manifest, "val", cfg["data"]).rows, trainer.val_rows)
    with pytest.raises(DataError, match="fold 7 does not exist .*pick one of them"):
        Trainer(load_config(None, tiny_train_overrides(blob_dataset) + ["data.fold=7"]), tmp_path / "fold7")


@pytest.mark.parametrize("schedule", ["cosine", "exponential"])
def test_the_logged_learning_rate_follows_warm_up_then_the_schedule_to_its_final_fraction(blob_dataset, tmp_path, schedule):
    import json
    import math

    lr, final, warmup, total = 0.002, 0.05, 2, 10
    cfg = load_config(None, tiny_train_overrides(blob_dataset, iterations=total) + [
        f"optim.lr={lr}", f"optim.schedule={schedule}", f"optim.final_lr_fraction={final}",
        f"optim.warmup_iterations={warmup}"])
    train(cfg, tmp_path / "run")
    logged = [json.loads(line)["lr"] for line in (tmp_path / "run/train_log.jsonl").read_text().splitlines()]
    progress = [(i - warmup) / (total - warmup) for i in range(warmup, total)]
    after = ([final + (1 - final) * 0.5 * (1 + math.cos(math.pi * p)) for p in progress] if schedule == "cosine"
             else [final**p for p in progress])
    assert logged == pytest.approx([lr * (i + 1) / warmup for i in range(warmup)] + [lr * f for f in after])
