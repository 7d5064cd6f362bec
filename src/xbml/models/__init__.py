"""Models: backbones (registry), the embedding head and prototype pooling."""

from xbml.models.backbones import BACKBONES, build_backbone
from xbml.models.embedding_model import EmbeddingModel, build_model
from xbml.models.heads import EmbeddingHead
from xbml.models.prototype_pooling import PrototypeAssignment

__all__ = [
    "BACKBONES",
    "build_backbone",
    "EmbeddingModel",
    "build_model",
    "EmbeddingHead",
    "PrototypeAssignment",
]
