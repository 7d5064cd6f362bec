"""Signs that training diverged, checked before anything is written or selected.

A finite loss does not prove a healthy model: a learning rate far too high can leave the loss
finite while BatchNorm's running variances overflow, and the validation pass then embeds every
image as the zero vector (or as one point), which still scores a MAP@R. So every checkpoint, the
model selected by validation and the finished model are checked tensor by tensor, and the
validation embeddings for collapse, before they are saved or chosen.
"""

from __future__ import annotations

import torch

from xbml.errors import TrainingDiverged

# embeddings are L2-normalised: rows this close to one another are one point
_COLLAPSED_SPREAD = 1e-6
_ZERO_NORM = 1e-6


def non_finite_tensor(state: dict) -> str | None:
    """The name of the first tensor of a state dict that holds NaN or infinity, else None."""
    for name, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None


def embedding_problem(emb) -> str | None:
    """Why a validation pass's embeddings cannot come from a working model, else None."""
    emb = torch.as_tensor(emb, dtype=torch.float32)
    if emb.numel() == 0:
        return None
    if not bool(torch.isfinite(emb).all()):
        return "contain NaN or infinity"
    norms = emb.norm(dim=1)
    if bool((norms < _ZERO_NORM).all()):
        return "are all zero vectors"
    if len(emb) > 1 and float((emb - emb.mean(dim=0)).abs().max()) < _COLLAPSED_SPREAD:
        return "all collapsed to one point"
    return None


def diverged(what: str, iteration: int, lr: float, checkpoint: str, kept: int) -> TrainingDiverged:
    """The one message every kind of divergence ends in: it names the learning rate first."""
    kept_text = (
        f"the last good checkpoint {checkpoint} (iteration {kept}) was kept"
        if kept > 0 else "no checkpoint was written"
    )
    return TrainingDiverged(
        f"training diverged at iteration {iteration}: the learning rate optim.lr={lr:g} is likely too high "
        f"({what}); no model.pt was written and "
        f"{kept_text}. Lower optim.lr (or xml.weight, or raise xml.ridge_lambda), delete the run folder's "
        "checkpoints/ and train again"
    )
