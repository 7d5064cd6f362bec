"""The report's figures: which PNG files it writes, and each chart drawn from the analysis.

Every name in FIGURES is written by every report, so a workflow can declare them all up front
(Snakemake's report() outputs); a figure that cannot be drawn for an experiment (no sweep, no
XML run, no test split, ...) is a small placeholder PNG that says why, and the page says so too.
The charts are here; the pictures of images and embeddings are in `picture_figures`. Captions
come from the caption files (`captions`), never from code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xbml.reporting.analysis import Analysis
    from xbml.reporting.captions import Captions

REGULARIZER_FIGURE = "regularizer_losses.png"

# file -> title (the placeholder's heading and the label in `snakemake --report`), in page order
FIGURES = {
    "metrics_test.png": "metrics on the test split",
    "metrics_val.png": "metrics on the validation split",
    "paired_differences.png": "paired differences to the baseline",
    "sweeps.png": "MAP@R against swept hyper-parameters",
    "training_curves.png": "training loss curves",
    "validation_curves.png": "validation MAP@R during training",
    REGULARIZER_FIGURE: "regulariser losses against chance",
    "retrieval.png": "retrieval examples",
    "tsne.png": "t-SNE of test embeddings",
    "prototype_maps.png": "prototype assignment maps",
    "prototype_usage.png": "prototype usage",
}


def figure_names() -> list[str]:
    return list(FIGURES)


@dataclass
class Figure:
    name: str
    png: bytes
    alt: str
    details: str = ""  # plain text: what this report's figure shows (runs, seed, sizes) beyond its caption
    drawn: bool = True  # False: a placeholder that says why the figure is missing
    message: str = ""
    caption: str = ""  # HTML, from the caption file


def drawn(name: str, fig, alt: str = "", details: str = "") -> Figure:
    from xbml.reporting import plots

    return Figure(name, plots.png_bytes(fig), alt or FIGURES[name], details)


def placeholder(name: str, message: str) -> Figure:
    from xbml.reporting import plots

    title = FIGURES[name]
    return Figure(name, plots.png_bytes(plots.message_figure(title, message)), title, drawn=False, message=message)


def draw_all(a: Analysis, captions: Captions) -> dict[str, Figure]:
    """Every figure of FIGURES, drawn or a placeholder, with its caption."""
    from xbml.reporting import picture_figures, plots

    palette = plots.run_palette(a.order, a.baseline)
    figures = [metrics_figure(a, "test", palette), metrics_figure(a, "val", palette),
               differences_figure(a, palette), sweeps_figure(a),
               training_curves_figure(a, palette), validation_curves_figure(a, palette), regularizer_figure(a, palette),
               *picture_figures.draw(a)]
    out = {f.name: f for f in figures}
    assert list(out) == list(FIGURES), list(out)
    for f in out.values():
        f.caption = captions.html(f.name, a.dataset, a.config)
    return out


def metrics_figure(a: Analysis, split: str, palette) -> Figure:
    from xbml.reporting import plots

    name = f"metrics_{split}.png"
    if split not in a.splits:
        return placeholder(name, f"the metrics table has no {split} rows")
    return drawn(name, plots.metrics_figure(a.df, split, a.order, palette, a.dataset),
                 f"retrieval metrics per run on the {split} split")


def differences_figure(a: Analysis, palette) -> Figure:
    from xbml.reporting import plots
    from xbml.reporting.analysis import MAIN_METRICS

    name = "paired_differences.png"
    rows = [c for c in a.comparisons if c.metric in MAIN_METRICS]
    if rows:
        return drawn(name, plots.differences_figure(rows, a.order, palette, a.dataset))
    if len(a.order) == 1:
        return placeholder(name, f"only one run, {a.order[0]!r}: nothing to compare")
    if a.baseline not in a.order:
        return placeholder(name, f"the baseline {a.baseline!r} is not in the metrics table")
    return placeholder(name, f"no run shares a seed with the baseline {a.baseline!r}")


def sweeps_figure(a: Analysis) -> Figure:
    from xbml.reporting import plots

    name = "sweeps.png"
    if not a.swept_methods:
        return placeholder(name, "no method of the workflow config sweeps a hyper-parameter")
    if not a.sweeps:
        return placeholder(name, "the metrics table has no swept settings")
    sweeps = [(s.method, s.key, s.others) for s in a.sweeps]
    return drawn(name, plots.sweep_figure(a.df, sweeps, a.baseline, a.selected, a.confidence, a.dataset))


def training_curves_figure(a: Analysis, palette) -> Figure:
    from xbml.reporting import plots

    name = "training_curves.png"
    if a.train_logs.empty:
        return placeholder(name, "no train_log.jsonl was found in the run folders")
    return drawn(name, plots.training_curves_figure(a.train_logs, a.order, palette, a.dataset))


def validation_curves_figure(a: Analysis, palette) -> Figure:
    from xbml.reporting import plots
    from xbml.reporting.results import PRIMARY

    name = "validation_curves.png"
    if a.val_logs.empty or PRIMARY not in a.val_logs.columns:
        return placeholder(name, "no validation log: the dataset has no validation classes (val_fraction = 0)")
    return drawn(name, plots.validation_curves_figure(a.val_logs, a.order, palette, a.dataset))


def regularizer_figure(a: Analysis, palette) -> Figure:
    """Each regulariser's logged loss (loss_<name>) per run against its chance level."""
    from xbml.reporting import plots

    if not a.regularizers:
        return placeholder(REGULARIZER_FIGURE, "no run of this report trains with a regulariser")
    logs = a.train_logs
    panels = []
    for name in dict.fromkeys(d.name for d in a.regularizers):
        column = f"loss_{name}"
        runs = {d.run for d in a.regularizers if d.name == name}
        if column in logs and logs[logs["run"].isin(runs)][column].notna().any():
            label = next(d.label for d in a.regularizers if d.name == name)
            panels.append((name, label, runs))
    if not panels:
        return placeholder(REGULARIZER_FIGURE, "no regulariser loss (loss_<name>) in the train_log.jsonl of its runs")
    no_chance = sorted(f"{run} ({name})" for name, _, runs in panels for run in runs
                       if (run, name) not in a.chance and run in set(logs["run"]))
    details = (f"No chance level is defined or recorded for {', '.join(no_chance)}." if no_chance else "")
    return drawn(REGULARIZER_FIGURE, plots.regularizer_figure(logs, panels, a.order, palette, a.chance, a.dataset),
                 details=details)
