"""Training behaviour on a small prepared dataset, through the real trainer and CLI."""

import signal
import subprocess
import time

import pytest
import torch

from conftest import PYTHON, ROOT, make_blob_dataset, tiny_train_overrides
from xbml.config import load_config
from xbml.errors import CheckpointError, TrainingDiverged
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
    prepared = make_blob_dataset(tmp_path / "prepared")
    overrides = tiny_train_overrides(prepared, iterations=60) + ["xml.weight=0.1", "train.checkpoint_every=5"]
    train(load_config(None, overrides), tmp_path / "straight")

    cmd = [PYTHON, "-m", "xbml", "train", "--out", str(tmp_path / "killed")]
    for o in overrides:
        cmd += ["--set", o]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpt = tmp_path / "killed/checkpoints/last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and torch.load(ckpt, weights_only=True)["iteration"] >= 10:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)["iteration"]
    assert 10 <= killed_at < 60
    assert not (tmp_path / "killed/model.pt").exists()
    assert not (tmp_path / "killed/train_log.jsonl").exists()  # outputs appear only when complete

    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    assert f"resumed from {ckpt} at iteration {killed_at}" in out.stderr
    _assert_same_weights(_weights(tmp_path / "straight/model.pt"), _weights(tmp_path / "killed/model.pt"))
    # the log holds each iteration once, as if never interrupted
    lines = (tmp_path / "killed/train_log.jsonl").read_text().splitlines()
    assert len(lines) == 60
    assert (tmp_path / "straight/train_log.jsonl").read_text().count("\n") == 60


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

    def poisoned(images, labels, split):
        terms = original(images, labels, split)
        if trainer.iteration == 6:  # the 7th step diverges
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    trainer.objective.forward = poisoned
    with pytest.raises(TrainingDiverged, match="at iteration 7.*iteration 4"):
        trainer.fit()
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert state["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in state["objective"].values() if v.is_floating_point())


def test_cli_rejects_unknown_names_with_the_valid_ones(blob_dataset, tmp_path):
    for override, match in [
        ("model.backbone=vgg", "unknown backbone 'vgg'; valid backbones: glyph_convnet, resnet18, resnet50"),
        ("loss.name=foo", "unknown loss 'foo'; valid losss: "),
        ("xml.lamda=1", "unknown config key 'xml.lamda'"),
    ]:
        r = subprocess.run(
            [PYTHON, "-m", "xbml", "train", "--set", f"data.prepared={blob_dataset}", "--set", override,
             "--out", str(tmp_path / "x")],
            cwd=ROOT, capture_output=True, text=True,
        )
        assert r.returncode == 2, r.stderr
        assert match in r.stderr
        assert "Traceback" not in r.stderr


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
