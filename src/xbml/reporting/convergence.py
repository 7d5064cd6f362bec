"""Did training reach a plateau? A run's validation MAP@R over the last third of its iterations.

Comparing methods on models that are still improving measures how fast they learn, not where
they end; the report therefore states, per run and mean over seeds, how much validation MAP@R
rose from the first validation at or after 2/3 of the iterations to the last one, and calls a
gain of at most `PLATEAU_GAIN` a plateau (the criterion the default experiment is sized for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

PLATEAU_GAIN = 0.01


@dataclass(frozen=True)
class LastThird:
    """A run's validation MAP@R over the last third of training, per seed and their mean."""

    run: str
    start: int  # iteration of the first validation in the last third (the largest over seeds)
    end: int  # the last iteration
    gains: dict[int, float]  # seed -> MAP@R(end) - MAP@R(start)

    @property
    def mean_gain(self) -> float:
        return sum(self.gains.values()) / len(self.gains) if self.gains else math.nan

    @property
    def plateau(self) -> bool:
        return self.mean_gain <= PLATEAU_GAIN


def seed_gain(log: pd.DataFrame) -> tuple[int, int, float] | None:
    """(start, end, gain) of one seed's validation log; None with fewer than two validations."""
    log = log.dropna(subset=["map_at_r"]).sort_values("iteration")
    if len(log) < 2:
        return None
    end = int(log["iteration"].iloc[-1])
    later = log[log["iteration"] >= 2 * end / 3]
    first = later.iloc[0] if len(later) > 1 else log.iloc[-2]  # too few validations: the one before the last
    return int(first["iteration"]), end, float(log["map_at_r"].iloc[-1] - first["map_at_r"])


def last_third(val_logs: pd.DataFrame, run_order: list[str]) -> list[LastThird]:
    """Each run with at least two validations in some seed, in run order."""
    out = []
    if val_logs.empty or "map_at_r" not in val_logs:
        return out
    for run in run_order:
        rows = val_logs[val_logs["run"] == run]
        seeds = {int(s): seed_gain(g) for s, g in rows.groupby("seed")}
        seeds = {s: g for s, g in seeds.items() if g is not None}
        if seeds:
            out.append(LastThird(run, max(g[0] for g in seeds.values()), max(g[1] for g in seeds.values()),
                                 {s: g[2] for s, g in seeds.items()}))
    return out


def sentence(lt: LastThird) -> str:
    verdict = "a plateau" if lt.plateau else "still rising"
    return (f"{lt.run}: validation MAP@R {lt.mean_gain:+.4f} from iteration {lt.start} to {lt.end} (mean over "
            f"{len(lt.gains)} seed(s)): {verdict} (criterion: a gain of at most {PLATEAU_GAIN}).")


def caveat(rising: list[LastThird]) -> str:
    """What a comparison of runs that were still improving can and cannot say."""
    runs = ", ".join(f"{lt.run} {lt.mean_gain:+.4f}" for lt in rising)
    return (f"Training had not reached a plateau ({runs} validation MAP@R over the last third; criterion "
            f"{PLATEAU_GAIN}): these verdicts compare the models after {rising[0].end} iterations, not trained "
            "ones, and a method that only learns faster shows as better here. Train longer (train.iterations) "
            "until the check holds before reading them as the methods' effect.")
