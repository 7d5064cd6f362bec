import pytest
import torch

from xbml.losses.base_losses import build_base_loss, loss_names
from xbml.losses.cross_batch import CrossBatchRegularizer, cross_expressed_targets
from xbml.losses.ridge import ridge_solve
from xbml.models.heads import EmbeddingHead


def _batch(b=16, d=8, classes=(0, 1, 2, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    fmap = torch.randn(b, d, 3, 3, generator=g, requires_grad=True)
    labels = torch.tensor(classes).repeat_interleave(b // len(classes))
    return fmap, labels


def test_cross_expression_uses_the_other_halfs_prototypes():
    g = torch.Generator().manual_seed(0)
    P = torch.rand(8, 5, generator=g, dtype=torch.float64)
    T = torch.randn(8, 3, generator=g, dtype=torch.float64)
    t_hat = cross_expressed_targets(P, T, 4, 0.05)
    torch.testing.assert_close(t_hat[:4], P[:4] @ ridge_solve(P[4:], T[4:], 0.05))
    torch.testing.assert_close(t_hat[4:], P[4:] @ ridge_solve(P[:4], T[:4], 0.05))


def test_histograms_are_convex_weights():
    reg = CrossBatchRegularizer(8, 4, num_classes=4, num_prototypes=5)
    fmap, _ = _batch()
    hist = reg.assign(fmap)
    assert hist.shape == (16, 5)
    assert (hist >= 0).all()
    torch.testing.assert_close(hist.sum(1), torch.ones(16))


@pytest.mark.parametrize("target", ["class_proxy", "embedding"])
@pytest.mark.parametrize("prediction", ["proxy_softmax", "base"])
def test_every_variant_gives_a_finite_loss_with_gradients(target, prediction):
    reg = CrossBatchRegularizer(8, 4, num_classes=4, num_prototypes=5, target=target, prediction_loss=prediction)
    head = EmbeddingHead(8, 4)
    base = build_base_loss({"name": "multi_similarity", "params": {}, "miner": None, "miner_params": {}}, 4, 4)
    fmap, labels = _batch()
    pooled = fmap.mean(dim=(2, 3))
    loss = reg(reg.assign(fmap), reg.targets(pooled, labels), labels, 8, head=head, base_loss=base)
    assert torch.isfinite(loss)
    loss.backward()
    assert fmap.grad is not None and fmap.grad.abs().sum() > 0
    assert reg.assign.prototypes.grad.abs().sum() > 0


def test_halves_that_share_a_class_are_refused():
    reg = CrossBatchRegularizer(8, 4, num_classes=4, num_prototypes=5)
    fmap, _ = _batch()
    labels = torch.tensor([0, 1, 2, 3]).repeat(4)  # every class in both halves
    with pytest.raises(ValueError, match="class-disjoint"):
        reg(reg.assign(fmap), reg.targets(None, labels), labels, 8)


def test_proxy_softmax_prefers_the_true_class_when_targets_are_perfect():
    """If each half's prototypes express the other half's class vectors exactly, loss is near its minimum."""
    reg = CrossBatchRegularizer(8, 4, num_classes=4, num_prototypes=4, ridge_lambda=1e-6, proxy_scale=30.0)
    with torch.no_grad():
        reg.class_vectors.copy_(torch.eye(4))
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    # one-hot histograms on prototype = class: prototypes fitted on B2 map prototype 0/1 to nothing useful,
    # so the prediction for B1 must be poor; with a shared prototype per class pair it improves
    P_bad = torch.nn.functional.one_hot(labels, 4).float()
    bad = reg(P_bad, reg.targets(None, labels), labels, 4)
    P_good = torch.nn.functional.one_hot(labels % 2, 4).float()  # class 0 and 2 share prototype 0, 1 and 3 prototype 1
    reg_same = CrossBatchRegularizer(8, 4, num_classes=4, num_prototypes=4, ridge_lambda=1e-6, proxy_scale=30.0)
    with torch.no_grad():
        reg_same.class_vectors.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    good = reg_same(P_good, reg_same.targets(None, labels), labels, 4)
    assert good < bad


@pytest.mark.parametrize("name", ["contrastive", "triplet", "multi_similarity", "proxy_nca", "proxy_anchor"])
def test_base_losses_from_pytorch_metric_learning(name):
    assert name in loss_names()
    loss = build_base_loss({"name": name, "params": {}, "miner": "auto", "miner_params": {}}, 4, 8)
    emb = torch.nn.functional.normalize(torch.randn(16, 8, requires_grad=True), dim=1)
    labels = torch.arange(4).repeat_interleave(4)
    value = loss(emb, labels)
    assert torch.isfinite(value)


def test_unknown_loss_lists_the_valid_ones():
    from xbml.errors import ConfigError

    with pytest.raises(ConfigError, match="valid losss?: .*multi_similarity"):
        build_base_loss({"name": "arcface2", "params": {}, "miner": None, "miner_params": {}}, 4, 8)
