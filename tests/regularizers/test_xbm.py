"""Cross-batch memory (XBM) as a regulariser: what pytorch-metric-learning's CrossBatchMemory does
not do by itself, xbml must (its queue position in checkpoints, a start iteration, the miner on
the memory, one process only), and a killed XBM run resumes to the same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import torch

from conftest import KILL_AFTER_CHECKPOINT, PYTHON, ROOT, make_blob_dataset, tiny_train_overrides
from xbml.config import load_config
from xbml.errors import ConfigError
from xbml.losses.base_losses import build_base_loss
from xbml.models import build_model
from xbml.regularizers import Batch, BuildContext
from xbml.regularizers.xbm import CrossBatchMemoryRegularizer
from xbml.training.trainer import Trainer, train

XBM = ["loss.name=contrastive", "xbm.weight=0.5", "xbm.memory_size=48"]


class _Out:
    def __init__(self, embedding):
        self.embedding = embedding


def _xbm(cfg_overrides=(), world_size=1, num_classes=10) -> CrossBatchMemoryRegularizer:
    cfg = load_config(None, [*XBM, "model.embedding_dim=8", "sampler.classes_per_batch=4",
                             "sampler.images_per_class=2", *cfg_overrides])
    model = build_model(cfg["model"], 1)
    base = build_base_loss(cfg["loss"], num_classes, 8)
    return CrossBatchMemoryRegularizer.build(cfg["xbm"], BuildContext(model, base, cfg, num_classes, world_size))


def _batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat_interleave(2)
    return [(torch.nn.functional.normalize(torch.randn(8, 8, generator=g), dim=1), labels) for _ in range(n)]


def _loss(reg, embeddings, labels, iteration):
    return reg(Batch(_Out(embeddings), labels, 4, iteration, None, None))["loss"]


def test_the_queue_position_travels_with_the_state_dict():
    batches = _batches(4)
    reg = _xbm()
    for i, (e, y) in enumerate(batches[:3]):
        _loss(reg, e, y, i)
    assert reg.memory.queue_idx == 24 and not reg.memory.has_been_filled
    restored = _xbm()
    restored.load_state_dict(reg.state_dict())
    e, y = batches[3]
    assert torch.equal(_loss(restored, e, y, 3), _loss(reg, e, y, 3))
    # the library's module alone loses the position: its next batch lands elsewhere in the memory
    plain = _xbm().memory
    plain.load_state_dict(reg.memory.state_dict())
    assert torch.equal(plain.embedding_memory, reg.memory.embedding_memory)
    assert plain.queue_idx == 0 != reg.memory.queue_idx


def test_nothing_is_remembered_before_the_start_iteration_and_the_miner_sees_the_memory():
    reg = _xbm(["xbm.start_iteration=2", "loss.miner=auto"])
    assert reg.memory.miner is not None  # contrastive's pair-margin miner mines batch x memory
    (e0, y0), (e1, y1), (e2, y2) = _batches(3)
    assert _loss(reg, e0, y0, 0).item() == 0.0 and _loss(reg, e1, y1, 1).item() == 0.0
    assert reg.memory.queue_idx == 0 and reg.filled == 0.0
    loss = _loss(reg, e2, y2, 2)
    assert reg.memory.queue_idx == 8 and reg.filled == pytest.approx(8 / 48) and loss.item() >= 0.0


def test_xbm_refuses_several_processes_and_proxy_losses_by_name():
    with pytest.raises(ConfigError, match="xbm cannot train with 2 processes"):
        _xbm(world_size=2)
    with pytest.raises(ConfigError, match="pair-based loss, but loss.name is 'proxy_anchor'; use one of .*contrastive"):
        load_config(None, ["loss.name=proxy_anchor", "xbm.weight=0.5"])
    with pytest.raises(ConfigError, match="'xbm.memory_size' is 8, smaller than one batch \\(64 images\\)"):
        load_config(None, ["loss.name=contrastive", "xbm.weight=0.5", "xbm.memory_size=8"])
    load_config(None, ["loss.name=proxy_anchor"])  # xbm off: any base loss


def test_xml_base_prediction_pushes_nothing_into_the_memory(tmp_path):
    prepared = make_blob_dataset(tmp_path / "prepared")
    cfg = load_config(None, tiny_train_overrides(prepared, iterations=3) + XBM + [
        "xml.weight=0.2", "xml.prediction_loss=base", "xml.target=embedding"])
    trainer = Trainer(cfg, tmp_path / "run")
    assert set(trainer.objective.regularizers) == {"xbm", "xml"}
    trainer.fit()
    memory = trainer.objective.regularizers["xbm"].memory
    assert memory.queue_idx == (3 * 24) % 48 and memory.has_been_filled  # 24 embeddings per step, no more
    record = (tmp_path / "run/train_log.jsonl").read_text().splitlines()[0]
    assert '"loss_xbm"' in record and '"loss_xml"' in record and '"xbm_memory_fill"' in record


def test_a_killed_xbm_run_resumes_to_the_same_weights(tmp_path):
    prepared = make_blob_dataset(tmp_path / "prepared")
    overrides = tiny_train_overrides(prepared, iterations=24) + XBM + ["xbm.start_iteration=3",
                                                                      "train.checkpoint_every=5"]
    train(load_config(None, overrides), tmp_path / "straight")
    args = ["train", "--out", str(tmp_path / "killed")] + [w for o in overrides for w in ("--set", o)]
    killed = subprocess.run([PYTHON, "-c", KILL_AFTER_CHECKPOINT, *args], cwd=ROOT, capture_output=True,
                            env={**os.environ, "KILL_AT": "10"})
    assert killed.returncode == -signal.SIGKILL
    subprocess.run([PYTHON, "-m", "xbml", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    a = torch.load(tmp_path / "straight/model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "killed/model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the memory loss of every step after the resume is the uninterrupted run's, bit for bit
    straight = (tmp_path / "straight/train_log.jsonl").read_text().splitlines()
    resumed = (tmp_path / "killed/train_log.jsonl").read_text().splitlines()
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k != "time_s"}  # noqa: E731
    assert [strip(x) for x in straight] == [strip(x) for x in resumed]
    assert any(json.loads(x)["loss_xbm"] > 0 for x in straight[3:])
