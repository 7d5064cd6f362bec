"""Reporting: the metrics table, paired statistics, seaborn figures, pictures and the HTML page.

One concept per module: `results` (reading a results tree), `tables`, `statistics`,
`plots` (seaborn figures of the metrics and logs), `pictures` (retrieval grids,
prototype maps, t-SNE; these need torch), `environment` and `html`; `figures`
names the PNG files a report writes so a workflow can declare them up front.
"""

from xbml.reporting.figures import figure_names
from xbml.reporting.statistics import PairedComparison, bootstrap_ci, compare, describe, paired_t_test

__all__ = ["PairedComparison", "bootstrap_ci", "compare", "describe", "figure_names", "paired_t_test"]
