"""The retrieval metrics by name, defined once: what `xbml evaluate` writes, what training
validates on, what the tables show and what the report tests. Imports nothing.

MLRC's triple (MAP@R, R-Precision, P@1) ranks the neighbours of every query; Recall@k (the
share of queries with a same-class item among the k nearest) is kept for older tables.
"""

RANK_METRICS = ("map_at_r", "r_precision", "precision_at_1")
RECALL_KS = (1, 2, 4, 8)
PRIMARY_METRIC = "map_at_r"


def recall_name(k: int) -> str:
    return f"recall_at_{k}"


def recall_names(ks=RECALL_KS) -> tuple[str, ...]:
    return tuple(recall_name(k) for k in ks)


ALL_METRICS = RANK_METRICS + recall_names()
METRIC_LABELS = {
    "map_at_r": "MAP@R",
    "r_precision": "R-Precision",
    "precision_at_1": "P@1",
    **{recall_name(k): f"R@{k}" for k in RECALL_KS},
}
#: the metrics the report tests: R@1 equals P@1 by definition (a same-class item among the first 1
#: is the first being same-class), so it is shown but not tested twice
TESTED_METRICS = tuple(m for m in ALL_METRICS if m != recall_name(1))
