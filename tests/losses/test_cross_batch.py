import math

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from xbml.losses.base_losses import build_base_loss, loss_names
from xbml.losses.cross_batch import CrossBatchRegularizer, cross_expressed_targets
from xbml.losses.ridge import ridge_solve
from xbml.models.embedding_model import ModelOutput
from xbml.models.heads import EmbeddingHead
from xbml.models.prototype_pooling import glorot_uniform, lipschitz_normalize

D_FEAT, D_EMB, CLASSES = 8, 4, 4


def _output(b=16, d=D_FEAT, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    fmap = torch.randn(b, d, 3, 3, generator=g, dtype=dtype).requires_grad_()
    labels = torch.arange(CLASSES).repeat_interleave(b // CLASSES)
    return ModelOutput(feature_map=fmap, pooled=fmap.mean(dim=(2, 3)), embedding=None), labels


def _regularizer(**kw):
    return CrossBatchRegularizer(D_FEAT, D_EMB, num_classes=CLASSES, num_prototypes=5, **kw)


def _base_loss():
    return build_base_loss({"name": "multi_similarity", "params": {}, "miner": None, "miner_params": {}}, CLASSES, D_EMB)


def test_cross_expression_uses_the_other_halfs_prototypes():
    g = torch.Generator().manual_seed(0)
    P = torch.rand(8, 5, generator=g, dtype=torch.float64)
    T = torch.randn(8, 3, generator=g, dtype=torch.float64)
    t_hat = cross_expressed_targets(P, T, 4, 0.05)
    torch.testing.assert_close(t_hat[:4], P[:4] @ ridge_solve(P[4:], T[4:], 0.05))
    torch.testing.assert_close(t_hat[4:], P[4:] @ ridge_solve(P[:4], T[:4], 0.05))


def test_cross_expression_is_exact_when_both_halves_share_the_prototypes():
    g = torch.Generator().manual_seed(1)
    P = torch.rand(12, 3, generator=g, dtype=torch.float64).softmax(dim=1)
    omega = torch.randn(3, 5, generator=g, dtype=torch.float64)
    T = P @ omega  # both halves explained by the same prototypes
    torch.testing.assert_close(cross_expressed_targets(P, T, 6, 1e-10), T, atol=1e-6, rtol=1e-6)


def test_lipschitz_normalisation_shortens_only_long_vectors_with_the_stated_gradient():
    x = torch.tensor([[0.3, 0.4], [3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    y = lipschitz_normalize(x)
    torch.testing.assert_close(y, torch.tensor([[0.3, 0.4], [0.6, 0.8]], dtype=torch.float64))
    jac = torch.autograd.functional.jacobian(lambda v: lipschitz_normalize(v.view(2, 2)).flatten(), x.flatten())
    torch.testing.assert_close(jac[:2, :2], torch.eye(2, dtype=torch.float64))  # short: identity
    u = torch.tensor([0.6, 0.8], dtype=torch.float64)
    torch.testing.assert_close(jac[2:, 2:], (torch.eye(2, dtype=torch.float64) - torch.outer(u, u)) / 5.0)


def test_histograms_are_convex_weights_of_the_projected_locations():
    reg, head = _regularizer(), EmbeddingHead(D_FEAT, D_EMB)
    out, _ = _output()
    locations = reg.assign.locations(out.feature_map, head)
    assert locations.shape == (16, 9, D_EMB)
    # the projected map's GAP is the head's linear map of the GAP: the embedding keeps its value
    torch.testing.assert_close(locations.mean(dim=1), head(out.pooled, normalize=False) - head.linear.bias)
    hist = reg.assign(locations)
    assert hist.shape == (16, 5) and (hist >= 0).all()
    torch.testing.assert_close(hist.sum(1), torch.ones(16))


def test_projected_class_proxy_loss_equals_the_formulas_of_method_md():
    torch.manual_seed(0)
    reg, head = _regularizer(), EmbeddingHead(D_FEAT, D_EMB)
    out, labels = _output(dtype=torch.float64)
    terms = reg.from_output(out, labels, 8, head=head)
    # method.md sections 1-3 written out in float64, independently of the module
    x = out.feature_map.detach().flatten(2).transpose(1, 2)
    z = x @ head.linear.weight.detach().double().t()
    norm = z.norm(dim=-1, keepdim=True)
    a = (10.0 * torch.where(norm > 1, z / norm, z) @ reg.assign.prototypes.detach().double().t()).softmax(-1)
    P, C = a.mean(1), reg.class_vectors.detach().double()
    T = C[labels]

    def omega(p, t):
        return torch.linalg.solve(p.t() @ p + 0.05 * torch.eye(5, dtype=torch.float64), p.t() @ t)

    t_hat = torch.cat([P[:8] @ omega(P[8:], T[8:]), P[8:] @ omega(P[:8], T[:8])])
    expected = F.cross_entropy(9.5 * t_hat @ C.t(), labels)
    assert terms.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms.assign_entropy.item() == pytest.approx((-(a * a.log()).sum(-1)).mean().item(), rel=1e-5)
    pbar = P.mean(0)
    assert terms.effective_prototypes.item() == pytest.approx(math.exp(-(pbar * pbar.log()).sum().item()), rel=1e-5)


@pytest.mark.parametrize("features", ["projected", "backbone"])
@pytest.mark.parametrize("target", ["class_proxy", "embedding"])
@pytest.mark.parametrize("prediction", ["proxy_softmax", "base"])
def test_the_gradient_reaches_every_parameter_it_should(features, target, prediction):
    reg = _regularizer(target=target, prediction_loss=prediction, features=features)
    head = EmbeddingHead(D_FEAT, D_EMB)
    out, labels = _output()
    reg.from_output(out, labels, 8, head=head, base_loss=_base_loss()).loss.backward()
    assert out.feature_map.grad.abs().sum() > 0  # the backbone learns from XML
    assert reg.assign.prototypes.grad.abs().sum() > 0
    if reg.class_vectors is not None:
        assert reg.class_vectors.grad.abs().sum() > 0
    head_learns = features == "projected" or target == "embedding"
    assert (head.linear.weight.grad is not None and head.linear.weight.grad.abs().sum() > 0) == head_learns


def test_in_class_proxy_mode_the_authors_formulation_trains_the_head():
    reg, head = _regularizer(), EmbeddingHead(D_FEAT, D_EMB)
    out, labels = _output()
    reg.from_output(out, labels, 8, head=head).loss.backward()
    assert head.linear.weight.grad.abs().sum() > 0


class _MatmulDtypes(TorchFunctionMode):
    PRODUCTS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__}

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func in self.PRODUCTS:
            self.dtypes.append(result.dtype)
        return result


def test_under_bf16_autocast_the_regulariser_computes_in_float32():
    reg, head = _regularizer(), EmbeddingHead(D_FEAT, D_EMB)
    out, labels = _output()
    out = ModelOutput(out.feature_map.bfloat16(), out.pooled.bfloat16(), None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probe = torch.ones(2, 2) @ torch.ones(2, 2)
        assert probe.dtype == torch.bfloat16  # autocast is really on for matmuls here
        with _MatmulDtypes() as mode:
            terms = reg.from_output(out, labels, 8, head=head)
    # projection, assignment logits, P Omega (and the ridge normal equations), proxy logits
    assert len(mode.dtypes) >= 5
    assert set(mode.dtypes) == {torch.float32}
    assert terms.loss.dtype == torch.float32


def test_initialisation_follows_the_authors():
    g = torch.Generator().manual_seed(0)
    reg = CrossBatchRegularizer(8, 64, num_classes=2000, num_prototypes=32, generator=g)
    # class vectors: he-normal over the classes, std sqrt(2 / C)
    assert reg.class_vectors.std().item() == pytest.approx(math.sqrt(2 / 2000), rel=0.03)
    # prototypes: glorot-uniform, unnormalised
    bound = math.sqrt(6 / (32 + 64))
    protos = reg.assign.prototypes.detach()
    assert protos.abs().max() <= bound and protos.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert glorot_uniform(3, 4, torch.Generator().manual_seed(5)).equal(glorot_uniform(3, 4, torch.Generator().manual_seed(5)))


def test_a_regulariser_that_knows_nothing_scores_chance():
    reg, head = _regularizer(), EmbeddingHead(D_FEAT, D_EMB)
    with torch.no_grad():
        reg.class_vectors.zero_()  # every class equally likely
    out, labels = _output()
    assert reg.from_output(out, labels, 8, head=head).loss.item() == pytest.approx(math.log(CLASSES), rel=1e-6)
    assert reg.chance == pytest.approx(math.log(CLASSES))
    assert _regularizer(prediction_loss="base", target="embedding").chance is None


def test_halves_that_share_a_class_are_refused():
    reg, head = _regularizer(), EmbeddingHead(D_FEAT, D_EMB)
    out, _ = _output()
    labels = torch.tensor([0, 1, 2, 3]).repeat(4)  # every class in both halves
    with pytest.raises(ValueError, match="class-disjoint"):
        reg.from_output(out, labels, 8, head=head)


@pytest.mark.parametrize("name", ["contrastive", "triplet", "multi_similarity", "proxy_nca", "proxy_anchor"])
def test_base_losses_from_pytorch_metric_learning(name):
    assert name in loss_names()
    loss = build_base_loss({"name": name, "params": {}, "miner": "auto", "miner_params": {}}, 4, 8)
    emb = torch.nn.functional.normalize(torch.randn(16, 8, requires_grad=True), dim=1)
    labels = torch.arange(4).repeat_interleave(4)
    value = loss(emb, labels)
    assert torch.isfinite(value) and value.item() > 0
    value.backward()


def test_unknown_loss_lists_the_valid_ones():
    from xbml.errors import ConfigError

    with pytest.raises(ConfigError, match="valid losss?: .*multi_similarity"):
        build_base_loss({"name": "arcface2", "params": {}, "miner": None, "miner_params": {}}, 4, 8)


def test_the_catalog_names_real_pytorch_metric_learning_classes():
    from pytorch_metric_learning import losses, miners

    from xbml.losses.catalog import BASE_LOSSES, MINERS, miner_names

    for name in loss_names():
        assert issubclass(BASE_LOSSES.get(name).load(), losses.BaseMetricLossFunction), name
    for name in miner_names():
        assert issubclass(MINERS.get(name).load(), miners.BaseMiner), name
