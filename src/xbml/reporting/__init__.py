"""Reporting: the metrics table, paired statistics, seaborn figures, pictures and the HTML page.

One concept per module: `results` (reading a results tree), `tables`, `statistics`
(exact sign-flip tests, TOST, t intervals, Holm), `regularizer_diagnostics` (did each regulariser
learn), `analysis` (every number and choice of a report, computed once), `captions` (the
workflow's report/*.rst as HTML), `figures` (the PNG files a report writes, so a workflow can
declare them up front, and the charts), `picture_figures` (retrieval, t-SNE, prototypes),
`plots` and `pictures` (drawing; pictures need torch), `page` and `page_tables` (the HTML),
`environment`, `html` and `report` (writing it all).
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
