"""Divergence that leaves the loss finite: overflowed parameters or buffers and collapsed
embeddings stop training with the learning rate named, keep the last good checkpoint, and write
no model.pt."""

from __future__ import annotations

import pytest
import torch

from conftest import make_blob_dataset, tiny_train_overrides
from faults import cli, error_line, xbml
from xbml.config import load_config
from xbml.errors import TrainingDiverged
from xbml.training.health import embedding_problem, non_finite_tensor
from xbml.training.trainer import Trainer


@pytest.fixture(scope="module")
def validated_blobs(tmp_path_factory):
    # validation classes, so that the run selects a model by MAP@R as the real experiments do
    return make_blob_dataset(tmp_path_factory.mktemp("blobs") / "prepared", val_fraction=0.25)


def _finite(path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=True)["objective"]
    return non_finite_tensor(state) is None


def _poison_before_validation(trainer: Trainer, at: int, poison) -> None:
    """Call `poison(model)` after step `at`, right before its validation and checkpoint, as an
    overflow in that step would."""
    validate = trainer.validate

    def poison_then_validate():
        if trainer.iteration == at:
            with torch.no_grad():
                poison(trainer.objective.model)
        return validate()

    trainer.validate = poison_then_validate


def _bn_variance_overflows(model):
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    bn.running_var.fill_(float("inf"))


def _head_collapses(model):
    model.head.linear.weight.zero_()
    model.head.linear.bias.zero_()


@pytest.mark.parametrize(
    "poison, what",
    [(_bn_variance_overflows, "running_var holds NaN or infinity"), (_head_collapses, "validation embeddings are all zero")],
    ids=["overflowed-buffer", "collapsed-embeddings"],
)
def test_a_poisoned_state_stops_training_and_never_replaces_the_good_checkpoint(validated_blobs, tmp_path, poison, what):
    cfg = load_config(None, tiny_train_overrides(validated_blobs, iterations=12) + ["train.eval_every=4"])
    trainer = Trainer(cfg, tmp_path / "run")
    _poison_before_validation(trainer, 8, poison)
    with pytest.raises(TrainingDiverged, match=rf"at iteration 8: the learning rate optim.lr=0.001 .*\(.*{what}.*\(iteration 4\) was kept"):
        trainer.fit()
    ckpt = tmp_path / "run/checkpoints/last.pt"
    assert torch.load(ckpt, weights_only=True)["iteration"] == 4 and _finite(ckpt)
    assert not (tmp_path / "run/model.pt").exists()
    assert not (tmp_path / "run/train_summary.json").exists()


def test_a_runaway_learning_rate_is_named_and_a_sane_rerun_finishes(capsys, validated_blobs, tmp_path):
    # lr 1e6: the loss may stay finite while BatchNorm statistics overflow; the user must read
    # about the learning rate, not about embeddings, and find no model.pt to mistake for a result
    args = ["train", "--out", tmp_path / "run"]
    for o in tiny_train_overrides(validated_blobs, iterations=2) + ["train.eval_every=1", "train.checkpoint_every=1"]:
        args += ["--set", o]
    res = xbml(*args, "--set", "optim.lr=1e6")
    line = error_line(res.returncode, res.stderr, "Lower optim.lr")
    # the cause comes first; what overflowed (here: the validation embeddings) only in brackets
    assert "training diverged at iteration 1: the learning rate optim.lr=1e+06 is likely too high (" in line
    assert not (tmp_path / "run/model.pt").exists() and not (tmp_path / "run/run.json").exists()
    assert not (tmp_path / "run/checkpoints/last.pt").exists()  # nothing good to keep at iteration 1
    code, err = cli(capsys, *args)  # the default learning rate (in-process: no second start-up)
    assert code == 0, err[-2000:]
    assert (tmp_path / "run/model.pt").exists()


def test_embedding_checks_tell_collapse_from_a_working_model():
    good = torch.nn.functional.normalize(torch.randn(20, 8), dim=1)
    assert embedding_problem(good) is None
    assert embedding_problem(torch.zeros(20, 8)) == "are all zero vectors"
    assert embedding_problem(good[:1].repeat(20, 1)) == "all collapsed to one point"
    assert embedding_problem(torch.full((20, 8), float("nan"))) == "contain NaN or infinity"
    assert embedding_problem(torch.zeros(0, 8)) is None
