"""Seaborn figures of the metrics table and the training logs (matplotlib Agg, PNG bytes).

Every function returns a matplotlib Figure; `png_bytes` renders it. Layout is
matplotlib's constrained layout so labels never overlap; run names (which can be
long, `xml_w@xml.weight=0.2`) go on the vertical axis of horizontal plots.
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from xbml.metric_names import RANK_METRICS  # noqa: E402
from xbml.reporting.results import LOSS_LABELS, LOSS_TERMS, METRIC_LABELS, METRICS, PRIMARY  # noqa: E402
from xbml.workflow.plan import SEPARATED  # noqa: E402
from xbml.reporting.statistics import PairedComparison, t_interval  # noqa: E402

DPI = 110
THEME = {"style": "whitegrid", "context": "notebook", "font_scale": 0.9}
UNIT = "fraction of queries, higher is better"


def theme() -> None:
    sns.set_theme(**THEME)
    plt.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "axes.titleweight": "bold", "figure.titleweight": "bold"})


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def run_palette(run_order: list[str], baseline: str) -> dict[str, tuple]:
    """One colour per run, the same in every figure; the baseline is grey."""
    others = [r for r in run_order if r != baseline]
    colours = sns.color_palette("colorblind" if len(others) <= 9 else "husl", max(1, len(others)))
    palette = {r: colours[i] for i, r in enumerate(others)}
    palette[baseline] = (0.35, 0.35, 0.35)
    return palette


def message_figure(title: str, message: str):
    """Stands in for a figure that cannot be drawn, saying why."""
    theme()
    fig = plt.figure(figsize=(7, 1.8), layout="constrained")
    fig.suptitle(title)
    fig.text(0.5, 0.4, message, ha="center", va="center", wrap=True, fontsize=11)
    return fig


def _seed_points(ax, data, x, y, order):
    sns.stripplot(
        data=data, x=x, y=y, order=order, color="black", alpha=0.65, size=4, jitter=0.12, ax=ax,
        legend=False, zorder=3,
    )


def metrics_figure(df: pd.DataFrame, split: str, run_order: list[str], palette: dict, dataset: str):
    """Every metric per run: mean +- sd over seeds (diamond and bar), seeds as dots."""
    theme()
    data = df[df["split"] == split]
    order = [r for r in run_order if r in set(data["run"])]
    n_seeds = data.groupby("run")["seed"].nunique()
    height = 1.2 + 0.42 * len(order)
    fig, axes = plt.subplots(2, 4, figsize=(15, 2 * height + 0.8), layout="constrained", sharey=True)
    for ax, (metric, label) in zip(axes.flat, METRICS):
        sns.pointplot(
            data=data, x=metric, y="run", order=order, hue="run", hue_order=order, palette=palette,
            errorbar="sd", markers="D", linestyle="none", capsize=0.25, err_kws={"linewidth": 1.6},
            legend=False, ax=ax, zorder=2,
        )
        _seed_points(ax, data, metric, "run", order)
        ax.set_title(label)
        ax.set_xlabel(f"{label} ({UNIT.split(',')[0]})")
        ax.set_ylabel("run" if ax in axes[:, 0] else "")
        stats = data.groupby("run")[metric].agg(["mean", "std"]).fillna(0.0)
        lo = min(data[metric].min(), (stats["mean"] - stats["std"]).min())
        hi = max(data[metric].max(), (stats["mean"] + stats["std"]).max())
        pad = max(0.01, (hi - lo) * 0.15)
        ax.set_xlim(max(-0.02, lo - pad), min(1.02, hi + pad) if hi <= 1 else hi + pad)
    key = axes.flat[-1]
    key.axis("off")
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="D", color="grey", linestyle="-", label="mean \u00b1 1 sd over seeds"),
        Line2D([], [], marker="o", color="black", alpha=0.65, linestyle="none", markersize=4, label="one seed"),
    ]
    key.legend(handles=handles, loc="center", frameon=False, title=f"seeds per run: {_seed_range(n_seeds)}")
    fig.suptitle(f"{dataset}: retrieval metrics on the {_split_words(split)}; higher is better")
    return fig


def _seed_range(counts) -> str:
    lo, hi = int(counts.min()), int(counts.max())
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _split_words(split: str) -> str:
    return {"test": "test classes (unseen in training)", SEPARATED: "test classes, fold models separately",
            "val": "validation classes (model selection)"}.get(split, split)


def differences_figure(comparisons: list[PairedComparison], run_order: list[str], palette: dict, dataset: str):
    """Per-seed paired differences (method - baseline) with the mean and its t interval."""
    theme()
    splits = [s for s in ("val", "test", SEPARATED) if any(c.split == s for c in comparisons)]
    metrics = [m for m in RANK_METRICS if any(c.metric == m for c in comparisons)]
    runs = [r for r in run_order if any(c.method == r for c in comparisons)]
    height = 1.0 + 0.45 * len(runs)
    fig, axes = plt.subplots(
        len(splits), len(metrics), figsize=(4.6 * len(metrics) + 1.5, height * len(splits) + 0.9),
        layout="constrained", sharey=True, squeeze=False,
    )
    baseline = comparisons[0].baseline
    for i, split in enumerate(splits):
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            rows = [c for c in comparisons if c.split == split and c.metric == metric]
            by_run = {c.method: c for c in rows}
            ax.axvline(0.0, color="black", linewidth=1, linestyle="--", zorder=1)
            for y, run in enumerate(runs):
                c = by_run.get(run)
                if c is None:
                    continue
                colour = palette.get(run, "C0")
                # one seed has no interval: the mean alone
                xerr = [[c.mean - c.ci_low], [c.ci_high - c.mean]] if c.n > 1 else None
                ax.errorbar(c.mean, y, xerr=xerr, fmt="D", color=colour, capsize=4, markersize=7, linewidth=2, zorder=2)
                jitter = np.linspace(-0.12, 0.12, len(c.differences)) if len(c.differences) > 1 else [0.0]
                ax.scatter(c.differences, y + np.asarray(jitter), color="black", s=16, alpha=0.7, zorder=3)
            ax.set_yticks(range(len(runs)), runs)
            ax.set_ylim(len(runs) - 0.5, -0.5)
            label = METRIC_LABELS[metric]
            ax.set_title(f"{label}, {split}")
            ax.set_xlabel(f"\u0394 {label} vs {baseline} (absolute)")
            if j == 0:
                ax.set_ylabel("run")
    conf = comparisons[0].confidence
    fig.suptitle(
        f"{dataset}: paired differences to {baseline} (same seed); diamond = mean, bar = "
        f"{round(conf * 100)}% t interval, dots = seeds"
    )
    return fig


def _is_numeric(values) -> bool:
    try:
        [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    return not any(isinstance(v, bool) for v in values)


def _t_band(confidence: float):
    """A seaborn errorbar: the t interval of the mean over seeds, as in the comparison tables."""

    def band(values):
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        return t_interval(v, confidence) if len(v) > 1 else (math.nan, math.nan)

    return band


def sweep_figure(
    df: pd.DataFrame, sweeps: list[tuple[str, str, list[str]]], baseline: str, best: dict[str, str],
    confidence: float, dataset: str,
):
    """MAP@R against each swept value (val and test), mean with a t-interval band over seeds.

    `sweeps` is [(method, key, other swept keys)], `best` maps a method to its run selected on
    validation MAP@R.
    """
    theme()
    splits = [s for s in ("val", "test") if s in set(df["split"])]
    fig, axes = plt.subplots(
        len(sweeps), len(splits), figsize=(6.2 * len(splits), 3.6 * len(sweeps) + 0.6),
        layout="constrained", squeeze=False,
    )
    level = round(confidence * 100)
    for i, (method, key, others) in enumerate(sweeps):
        part = df[df["method"] == method].copy()
        numeric = _is_numeric(part[key].dropna().unique())
        if numeric:
            part[key] = part[key].astype(float)
        if others:
            part["setting"] = part[others].astype(str).agg(", ".join, axis=1).radd(", ".join(others) + " = ")
        for j, split in enumerate(splits):
            ax = axes[i, j]
            data = part[part["split"] == split]
            if others:
                kws = dict(hue="setting", hue_order=sorted(part["setting"].unique()))
            else:
                kws = dict(color="C0", label=f"{method} (mean, {level}% CI band)")
            sns.lineplot(data=data, x=key, y=PRIMARY, errorbar=_t_band(confidence), marker="o", ax=ax, **kws)
            sns.scatterplot(data=data, x=key, y=PRIMARY, color="black", s=14, alpha=0.6, ax=ax, zorder=3,
                            label="one seed", legend=not others)
            base = df[(df["run"] == baseline) & (df["split"] == split)][PRIMARY]
            if len(base):
                m = base.mean()
                ax.axhline(m, color="grey", linestyle="--", linewidth=1.3, label=f"{baseline} (mean, band = \u00b11 sd)")
                if len(base) > 1:
                    s = base.std(ddof=1)
                    ax.axhspan(m - s, m + s, color="grey", alpha=0.15, linewidth=0)
            chosen = best.get(method)
            if chosen is not None:
                row = data[data["run"] == chosen]
                if len(row):
                    x = row[key].iloc[0]
                    ax.plot([x], [row[PRIMARY].mean()], marker="*", markersize=16, color="gold",
                            markeredgecolor="black", linestyle="none", zorder=4,
                            label="selected on validation MAP@R")
            if numeric:
                vals = sorted(v for v in data[key].unique() if not math.isnan(v))
                if vals and min(vals) > 0 and max(vals) / min(vals) >= 20:
                    ax.set_xscale("log")
                ax.set_xticks(vals, [f"{v:g}" for v in vals])
                ax.minorticks_off()
            ax.set_xlabel(f"{key} (swept value)")
            ax.set_ylabel(f"MAP@R ({UNIT.split(',')[0]})")
            ax.set_title(f"{method}: {_split_words(split)}")
            handles, labels = ax.get_legend_handles_labels()
            ax.get_legend().remove() if ax.get_legend() is not None else None
            if j == len(splits) - 1:  # one legend per row, outside the plots
                ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                          frameon=False)
    fig.suptitle(f"{dataset}: MAP@R over the swept hyper-parameters (selection uses validation only)")
    return fig


def _smoothed(logs: pd.DataFrame, term: str, window: int, max_points: int = 300) -> pd.DataFrame:
    parts = []
    for (run, seed), g in logs.groupby(["run", "seed"], sort=False):
        g = g.sort_values("iteration")
        s = g[term].rolling(window, min_periods=1).mean()
        parts.append(pd.DataFrame({"run": run, "seed": seed, "iteration": g["iteration"].to_numpy(), term: s.to_numpy()}))
    data = pd.concat(parts, ignore_index=True)
    its = np.sort(data["iteration"].unique())
    if len(its) > max_points:  # the same iterations for every run, so the band stays aligned
        keep = set(its[np.linspace(0, len(its) - 1, max_points).round().astype(int)].tolist())
        data = data[data["iteration"].isin(keep)]
    return data


def training_curves_figure(logs: pd.DataFrame, run_order: list[str], palette: dict, dataset: str):
    """Every logged loss term per run: mean over seeds of a rolling mean, band = +-1 sd over seeds."""
    theme()
    terms = [t for t in LOSS_TERMS if t in logs.columns and logs[t].notna().any()]
    total = int(logs["iteration"].max())
    window = max(1, round(total / 50))
    order = [r for r in run_order if r in set(logs["run"])]
    fig, axes = plt.subplots(1, len(terms), figsize=(4.4 * len(terms) + 2.4, 3.9), layout="constrained", squeeze=False)
    for ax, term in zip(axes[0], terms):
        present = logs[logs[term].notna()]
        data = _smoothed(present, term, window)
        sns.lineplot(
            data=data, x="iteration", y=term, hue="run", hue_order=[r for r in order if r in set(data["run"])],
            palette=palette, errorbar="sd", ax=ax, legend=ax is axes[0, 0], linewidth=1.4,
        )
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_title(LOSS_LABELS[term])
        ax.set_xlabel("training iteration (batches)")
        ax.set_ylabel(f"{term} (unitless)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if axes[0, 0].get_legend() is not None:
        axes[0, 0].get_legend().remove()
    fig.legend(handles, labels, loc="outside right upper", title="run", fontsize=8)
    smooth = f"rolling mean over {window} iterations; " if window > 1 else ""
    fig.suptitle(f"{dataset}: training losses ({smooth}line = mean over seeds, band = \u00b11 sd)")
    return fig


def validation_curves_figure(vals: pd.DataFrame, run_order: list[str], palette: dict, dataset: str):
    """Validation MAP@R during training, mean over seeds with a +-1 sd band."""
    theme()
    order = [r for r in run_order if r in set(vals["run"])]
    fig, ax = plt.subplots(figsize=(9.5, 4.2), layout="constrained")
    sns.lineplot(
        data=vals, x="iteration", y=PRIMARY, hue="run", hue_order=order, palette=palette,
        errorbar="sd", marker="o", markersize=5, ax=ax,
    )
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("training iteration (batches)")
    ax.set_ylabel(f"validation MAP@R ({UNIT.split(',')[0]})")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), title="run", fontsize=8)
    fig.suptitle(f"{dataset}: validation MAP@R during training (mean over seeds, band = \u00b11 sd)")
    return fig


def regularizer_figure(logs: pd.DataFrame, panels: list[tuple[str, str, set]], run_order: list[str], palette: dict,
                       chance: dict[tuple[str, str], float], dataset: str):
    """One panel per regulariser (name, label, its runs): loss_<name> per run, thin line per seed,
    thick mean over seeds (both smoothed), and a dashed line per distinct chance level."""
    theme()
    total = int(logs["iteration"].max())
    window = max(1, round(total / 50))
    fig, axes = plt.subplots(len(panels), 1, figsize=(9.5, 4.4 * len(panels)), layout="constrained", squeeze=False)
    for ax, (name, label, runs) in zip(axes[:, 0], panels):
        column = f"loss_{name}"
        data = _smoothed(logs[logs["run"].isin(runs) & logs[column].notna()], column, window)
        for run in [r for r in run_order if r in set(data["run"])]:
            part = data[data["run"] == run]
            colour = palette.get(run, "C0")
            for _, seed in part.groupby("seed", sort=True):
                ax.plot(seed["iteration"], seed[column], color=colour, linewidth=0.7, alpha=0.35)
            mean = part.groupby("iteration")[column].mean()
            ax.plot(mean.index, mean.to_numpy(), color=colour, linewidth=2.2, label=f"{run} (mean over seeds)")
        levels = sorted({round(v, 6) for (run, n), v in chance.items() if n == name and not math.isnan(v)})
        for level in levels:
            ax.axhline(level, color="black", linestyle="--", linewidth=1.2, label=f"chance: {level:.2f}")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("training iteration (batches)")
        ax.set_ylabel(label)
        ax.set_title(f"{label} ({name})", fontsize=11)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    smooth = f"rolling mean over {window} iterations; " if window > 1 else ""
    fig.suptitle(f"{dataset}: regulariser losses against chance\n({smooth}thin = one seed, thick = mean over seeds)")
    return fig
