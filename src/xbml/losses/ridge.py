"""Prototype learning as a ridge regression, in closed form (method.md section 2).

    Omega(P, T) = argmin ||P Omega - T||^2 + lambda ||Omega||^2
                = (P^T P + lambda I_K)^{-1} P^T T      (primal, K x K system)
                = P^T (P P^T + lambda I_b)^{-1} T      (dual, b x b system)

The smaller system is solved (never inverted); gradients flow through the solve.
"""

from __future__ import annotations

import torch


def ridge_solve(P: torch.Tensor, T: torch.Tensor, lam: float, form: str = "auto") -> torch.Tensor:
    """P: (b, K) histograms, T: (b, t) targets -> Omega: (K, t)."""
    if P.dim() != 2 or T.dim() != 2 or P.shape[0] != T.shape[0]:
        raise ValueError(f"ridge_solve needs P (b, K) and T (b, t); got {tuple(P.shape)} and {tuple(T.shape)}")
    b, k = P.shape
    if form == "auto":
        form = "primal" if k <= b else "dual"
    # the solve runs in float32 or better even under bf16 autocast: it is ill-conditioned for small lambda
    dtype = torch.promote_types(P.dtype, torch.float32)
    with torch.autocast(device_type=P.device.type, enabled=False):
        P, T = P.to(dtype), T.to(dtype)
        if form == "primal":
            A = P.t() @ P + lam * torch.eye(k, dtype=dtype, device=P.device)
            return torch.linalg.solve(A, P.t() @ T)
        if form == "dual":
            A = P @ P.t() + lam * torch.eye(b, dtype=dtype, device=P.device)
            return P.t() @ torch.linalg.solve(A, T)
    raise ValueError(f"form must be 'auto', 'primal' or 'dual', got {form!r}")
