"""XML's config block (xbml.regularizers.block): its keys, their defaults and valid values.

The valid values of `target`, `prediction_loss` and `features` are stated here once; the term
(xbml.losses.cross_batch, xbml.models.prototype_pooling) checks its arguments against them.
"""

from __future__ import annotations

from xbml.regularizers.block import RegularizerBlock

TARGETS = ("class_proxy", "embedding")
PREDICTION_LOSSES = ("proxy_softmax", "base")
FEATURES = ("projected", "backbone")


class XmlBlock(RegularizerBlock):
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
