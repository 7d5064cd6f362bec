"""Which PNG files a report writes, decided from the workflow config alone.

The HTML page shows the figures that apply; the same names are always written
(a figure that cannot be drawn from the results says why instead), so a
workflow can declare them as outputs before anything has run.
"""

from __future__ import annotations

from xbml.reporting.results import dataset_runs, run_names
from xbml.workflow.plan import Run

XML_LOSS_FIGURE = "xml_prediction_loss.png"


def runs_xml(config: dict, run: Run) -> bool:
    """Whether a run trains with the XML regulariser (its resolved xml.weight > 0)."""
    from xbml.config import load_config
    from xbml.errors import ConfigError

    try:
        cfg = load_config(config["datasets"][run.dataset]["train_config"], run.overrides)
    except ConfigError:
        # the train config cannot be read here: judge by the run's own overrides
        weights = [o.split("=", 1)[1] for o in run.overrides if o.startswith("xml.weight=")]
        return bool(weights) and float(weights[-1]) > 0
    return cfg["xml"]["weight"] > 0 or cfg["xml"]["force_compute"]


def figure_names(config: dict, dataset: str) -> list[str]:
    runs = dataset_runs(config, dataset)
    splits = config.get("eval_splits", ["val", "test"])
    names = [f"metrics_{split}.png" for split in splits]
    if len(run_names(runs)) > 1:
        names.append("paired_differences.png")
    if any(r.swept for r in runs):
        names.append("sweeps.png")
    with_xml = any(runs_xml(config, r) for r in runs)
    names += ["training_curves.png", "validation_curves.png"]
    if with_xml:
        names.append(XML_LOSS_FIGURE)
    if "test" in splits:
        names += ["retrieval.png", "tsne.png"]
        if with_xml:
            names += ["prototype_maps.png", "prototype_usage.png"]
    return names
