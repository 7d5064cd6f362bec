"""Reporting: the metrics table, paired statistics, seaborn figures, pictures and the HTML page.

One concept per module: `results` (reading a results tree), `tables`, `statistics`
(exact sign-flip tests, t intervals, Holm), `xml_diagnostics` (did the regulariser
learn), `plots` (seaborn figures of the metrics and logs), `pictures` (retrieval grids,
prototype maps, t-SNE; these need torch), `environment` and `html`; `figures`
names the PNG files a report writes so a workflow can declare them up front.
"""

from xbml.reporting.figures import figure_names
from xbml.reporting.statistics import (
    PairedComparison,
    compare,
    describe,
    holm,
    holm_adjust,
    sign_flip_p_value,
    t_interval,
)

__all__ = [
    "PairedComparison", "compare", "describe", "figure_names", "holm", "holm_adjust", "sign_flip_p_value", "t_interval",
]
