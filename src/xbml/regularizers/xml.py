"""XML, the cross-batch metric learning regulariser (Gurbuz & Alatan, ICIP 2023), as a plugin.

The mathematics lives in xbml.losses.cross_batch (method.md sections 1-3), the config block in
xbml.regularizers.xml_block; this module is its construction and its place in the objective. The
prediction loss of a uniform guess over the C training classes is ln C (`proxy_softmax`): a
regulariser that learns ends clearly below it.
"""

from __future__ import annotations

import math

from xbml.losses.cross_batch import CrossBatchRegularizer, chance_loss
from xbml.regularizers.base import Batch, BuildContext, Regularizer
from xbml.regularizers.registry import REGULARIZERS
from xbml.regularizers.xml_block import XmlBlock

# the offset of its generator from the run's seed (unchanged since the first XML runs: same numbers)
_GENERATOR_OFFSET = 7919


@REGULARIZERS.register("xml")
class XmlRegularizer(XmlBlock, Regularizer):
    @classmethod
    def build(cls, block: dict, context: BuildContext) -> XmlRegularizer:
        return cls(CrossBatchRegularizer(
            feature_dim=context.model.feature_dim,
            embedding_dim=context.embedding_dim,
            num_classes=context.num_classes,
            num_prototypes=block["num_prototypes"],
            assignment_scale=block["assignment_scale"],
            ridge_lambda=block["ridge_lambda"],
            target=block["target"],
            prediction_loss=block["prediction_loss"],
            proxy_scale=block["proxy_scale"],
            features=block["features"],
            generator=context.generator(_GENERATOR_OFFSET),
        ))

    def __init__(self, term: CrossBatchRegularizer):
        super().__init__()
        self.term = term

    @property
    def chance(self) -> float | None:
        return chance_loss(self.term.num_classes) if self.term.prediction_loss == "proxy_softmax" else None

    def forward(self, batch: Batch) -> dict:
        # `base` prediction calls the plain base loss: nothing of it reaches another
        # regulariser's state (e.g. XBM's memory)
        t = self.term.from_output(batch.output, batch.labels, batch.split, head=batch.head, base_loss=batch.base_loss)
        return {"loss": t.loss, "assign_entropy": t.assign_entropy, "effective_prototypes": t.effective_prototypes}

    def facts(self) -> dict:
        k = int(self.term.assign.prototypes.shape[0])
        return {"prediction_loss": self.term.prediction_loss, "features": self.term.features,
                "num_classes": self.term.num_classes, "num_prototypes": k, "max_entropy": math.log(k)}

    def picture_state(self) -> dict:
        """The prototypes of the final iteration, for the report's assignment maps."""
        return {k: v.detach().cpu() for k, v in self.term.state_dict().items()}
