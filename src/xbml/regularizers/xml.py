"""XML, the cross-batch metric learning regulariser (Gurbuz & Alatan, ICIP 2023), as a plugin.

The mathematics lives in xbml.losses.cross_batch (method.md sections 1-3); this module is its
config block, its construction and its place in the objective. The prediction loss of a uniform
guess over the C training classes is ln C (`proxy_softmax`): a regulariser that learns ends
clearly below it.
"""

from __future__ import annotations

import math

from xbml.losses.cross_batch import PREDICTION_LOSSES, TARGETS, CrossBatchRegularizer, chance_loss
from xbml.models.prototype_pooling import FEATURES
from xbml.regularizers.base import Batch, BuildContext, Regularizer
from xbml.regularizers.registry import REGULARIZERS

# the offset of its generator from the run's seed (unchanged since the first XML runs: same numbers)
_GENERATOR_OFFSET = 7919


@REGULARIZERS.register("xml")
class XmlRegularizer(Regularizer):
    name = "xml"
    label = "XML prediction loss"
    defaults = {
        "num_prototypes": 32,
        "assignment_scale": 10.0,
        "ridge_lambda": 0.05,
        "target": "class_proxy",
        "prediction_loss": "proxy_softmax",
        "proxy_scale": 9.5,
        # which locations the prototypes see: "projected" (W_e x_i, the authors' pooling layer)
        # or "backbone" (raw backbone locations by cosine; an ablation)
        "features": "projected",
        # compute the regulariser even at weight 0 (proves the paired-run property in tests)
        "force_compute": False,
    }
    diagnostics = {
        "assign_entropy": "assignment entropy (nats)",
        "effective_prototypes": "effective prototypes",
    }

    @classmethod
    def domains(cls):
        from xbml.config import AT_LEAST_ONE, POSITIVE

        intervals, _ = super().domains()
        intervals.update(num_prototypes=AT_LEAST_ONE, assignment_scale=POSITIVE, ridge_lambda=POSITIVE,
                         proxy_scale=POSITIVE)
        return intervals, {"target": TARGETS, "prediction_loss": PREDICTION_LOSSES, "features": FEATURES}

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
