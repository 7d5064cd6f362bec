"""Backbone -> GAP -> embedding head. XML adds nothing here: at test time only `embedding` is used."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xbml.models.backbones import build_backbone
from xbml.models.heads import EmbeddingHead
from xbml.models.input_normalisation import DeviceNormalisation


@dataclass
class ModelOutput:
    feature_map: torch.Tensor  # (b, d, h, w)
    pooled: torch.Tensor  # (b, d), GAP
    embedding: torch.Tensor  # (b, D), L2-normalised


class EmbeddingModel(nn.Module):
    def __init__(self, backbone: nn.Module, embedding_dim: int):
        super().__init__()
        self.backbone = backbone
        # uint8 batches become what the backbone's weights expect, where the model runs
        self.normalise = DeviceNormalisation(backbone.input_convention)
        self.head = EmbeddingHead(backbone.out_channels, embedding_dim)

    @property
    def feature_dim(self) -> int:
        return self.backbone.out_channels

    def forward(self, images: torch.Tensor) -> ModelOutput:
        fmap = self.backbone(self.normalise(images))
        pooled = fmap.float().mean(dim=(2, 3))
        return ModelOutput(feature_map=fmap, pooled=pooled, embedding=self.head(pooled))

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(images).embedding


def build_model(model_cfg: dict, in_channels: int) -> EmbeddingModel:
    backbone = build_backbone(
        model_cfg["backbone"],
        in_channels=in_channels,
        pretrained=model_cfg["pretrained"],
        weights_path=model_cfg["weights_path"],
    )
    return EmbeddingModel(backbone, model_cfg["embedding_dim"])
