import pytest
import torch

from xbml.losses.ridge import ridge_solve


def _ridge_by_lstsq(P, T, lam):
    """Ridge as ordinary least squares on the augmented system [P; sqrt(lam) I] Omega = [T; 0]."""
    k = P.shape[1]
    A = torch.cat([P, lam**0.5 * torch.eye(k, dtype=P.dtype)])
    B = torch.cat([T, torch.zeros(k, T.shape[1], dtype=T.dtype)])
    return torch.linalg.lstsq(A, B).solution


@pytest.mark.parametrize("b,k,t", [(16, 8, 5), (8, 32, 5), (32, 32, 64), (3, 1, 2)])
@pytest.mark.parametrize("form", ["primal", "dual", "auto"])
def test_closed_form_equals_lstsq_in_float64(b, k, t, form):
    g = torch.Generator().manual_seed(b * 100 + k)
    P = torch.rand(b, k, generator=g, dtype=torch.float64).softmax(dim=1)
    T = torch.randn(b, t, generator=g, dtype=torch.float64)
    expected = _ridge_by_lstsq(P, T, 0.05)
    got = ridge_solve(P, T, 0.05, form=form)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


def test_primal_and_dual_agree():
    g = torch.Generator().manual_seed(0)
    P = torch.rand(12, 20, generator=g, dtype=torch.float64)
    T = torch.randn(12, 7, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ridge_solve(P, T, 0.3, "primal"), ridge_solve(P, T, 0.3, "dual"))


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_gradients_through_the_solve_pass_gradcheck(form):
    g = torch.Generator().manual_seed(1)
    P = torch.rand(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    T = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, t: ridge_solve(p, t, 0.05, form=form), (P, T))


def test_float32_inputs_stay_float32_and_shapes_are_checked():
    P, T = torch.rand(8, 4), torch.rand(8, 3)
    assert ridge_solve(P, T, 0.1).dtype == torch.float32
    with pytest.raises(ValueError, match="needs P"):
        ridge_solve(P, torch.rand(7, 3), 0.1)
    with pytest.raises(ValueError, match="form"):
        ridge_solve(P, T, 0.1, form="inverse")
