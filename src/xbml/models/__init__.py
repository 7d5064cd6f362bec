"""Models: backbones (registry), the embedding head and prototype pooling.

The names below are imported on first use, so that `xbml.models.backbone_registry` (what config
validation reads) is importable without torch."""

from __future__ import annotations

from xbml.lazy_exports import lazy_exports

_EXPORTS = {
    "BACKBONES": "xbml.models.backbone_registry",
    "build_backbone": "xbml.models.backbones",
    "EmbeddingModel": "xbml.models.embedding_model",
    "build_model": "xbml.models.embedding_model",
    "EmbeddingHead": "xbml.models.heads",
    "PrototypeAssignment": "xbml.models.prototype_pooling",
}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
