"""Pictures of what the models learnt: retrieval examples, prototype assignment maps, t-SNE.

All choices are deterministic (fixed RNG seeds, ties broken by index), so the same
results give the same pictures. Images are shown as the model sees them at test
time (the eval transform of `ManifestImages`), un-normalised for display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from xbml.errors import XbmlError  # noqa: E402
from xbml.reporting.plots import theme  # noqa: E402

CORRECT = "#1a9850"
WRONG = "#d73027"
QUERY = "#2c7bb6"
PICTURE_SEED = 0
MAX_CANDIDATES = 2000


# -- embeddings and neighbours -------------------------------------------------------------------
@dataclass
class Embeddings:
    embeddings: np.ndarray  # (n, D) float32, L2-normalised
    labels: np.ndarray  # (n,)
    rows: np.ndarray  # (n,) manifest rows
    query: np.ndarray | None = None  # (n,) bool, None = every item is a query and a reference
    gallery: np.ndarray | None = None

    @property
    def query_indices(self) -> np.ndarray:
        return np.arange(len(self.labels)) if self.query is None else np.flatnonzero(self.query)

    @property
    def gallery_indices(self) -> np.ndarray:
        return np.arange(len(self.labels)) if self.gallery is None else np.flatnonzero(self.gallery)


def load_embeddings(path: str | Path) -> Embeddings:
    path = Path(path)
    if not path.exists():
        raise XbmlError(f"embeddings file {path} is missing; run `python -m xbml embed` for this run first")
    with np.load(path, allow_pickle=False) as z:
        emb = np.asarray(z["embeddings"], dtype=np.float32)
        labels = np.asarray(z["labels"])
        rows = np.asarray(z["rows"]) if "rows" in z.files else np.arange(len(labels))
        query = np.asarray(z["query"], bool) if "query" in z.files else None
        gallery = np.asarray(z["gallery"], bool) if "gallery" in z.files else None
    return Embeddings(emb, labels, rows, query, gallery)


def aligned(a: Embeddings, b: Embeddings) -> bool:
    return len(a.rows) == len(b.rows) and bool(np.array_equal(a.rows, b.rows))


def nearest_neighbours(e: Embeddings, queries: np.ndarray, k: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Top-k references of each query (indices into `e`, cosine scores), highest score first,
    ties by lower index; a query never retrieves itself. The evaluation's own exact search,
    so the pictures show the neighbours the metrics counted."""
    from xbml.evaluation.knn import cross_knn

    gallery = e.gallery_indices
    k = min(k, len(gallery) - (1 if e.gallery is None else 0))
    if k < 1:
        raise XbmlError("the reference set has too few items to show neighbours")
    queries = np.asarray(queries, dtype=np.int64)
    position = np.full(len(e.embeddings), -1, dtype=np.int64)
    position[gallery] = np.arange(len(gallery))
    idx, score = cross_knn(e.embeddings[queries], e.embeddings[gallery], k, chunk=chunk, exclude=position[queries])
    return gallery[idx], score


def candidate_queries(e: Embeddings, limit: int = MAX_CANDIDATES) -> np.ndarray:
    """Queries to choose examples from: all, or a fixed random subset of `limit`."""
    q = e.query_indices
    if len(q) > limit:
        q = np.sort(np.random.default_rng(PICTURE_SEED).choice(q, size=limit, replace=False))
    return q


def choose_queries(
    hits: list[np.ndarray], n: int, seed: int = PICTURE_SEED
) -> list[tuple[int, str]]:
    """Positions of n example queries, with why each was chosen.

    `hits` holds one (queries, k) bool array per run (neighbour has the query's class). With
    two runs, half are the queries whose precision@k differs most between them (ties by
    position), the rest random; with one run, all are random.
    """
    total = len(hits[0])
    n = min(n, total)
    chosen: list[tuple[int, str]] = []
    if len(hits) == 2 and n:
        diff = hits[1].mean(axis=1) - hits[0].mean(axis=1)
        order = np.lexsort((np.arange(total), -np.abs(diff)))
        for pos in order[: math.ceil(n / 2)]:
            if diff[pos] == 0:
                break
            chosen.append((int(pos), "largest difference"))
    taken = {p for p, _ in chosen}
    rest = np.array([p for p in range(total) if p not in taken], dtype=np.int64)
    rng = np.random.default_rng(seed)
    for pos in np.sort(rng.choice(rest, size=min(n - len(chosen), len(rest)), replace=False)):
        chosen.append((int(pos), "random"))
    return chosen


# -- images for display --------------------------------------------------------------------------
class DisplayImages:
    """Manifest rows -> HxWxC float images in [0, 1], as the model sees them at test time."""

    def __init__(self, data_cfg: dict, prepared: str | Path | None = None):
        from xbml.datasets.manifest import read_manifest
        from xbml.datasets.torch_data import ManifestImages

        self.manifest = read_manifest(prepared or data_cfg["prepared"])
        rows = np.arange(len(self.manifest))
        self.source = ManifestImages(
            self.manifest, rows, self.manifest.labels, data_cfg["image_size"], data_cfg["resize"], train=False
        )

    def tensor(self, row: int):
        return self.source.load(int(row))

    def to_display(self, x) -> np.ndarray:
        # images travel as uint8 and are normalised on the device, by the model
        x = x.detach().cpu().numpy() / 255.0
        x = np.clip(x.transpose(1, 2, 0), 0, 1)
        return x[..., 0] if x.shape[2] == 1 else x

    def image(self, row: int) -> np.ndarray:
        return self.to_display(self.tensor(row))


def _show(ax, img: np.ndarray, frame: str | None = None, width: float = 4.0) -> None:
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_edgecolor(frame)
            spine.set_linewidth(width)


# -- retrieval examples ---------------------------------------------------------------------------
def retrieval_figure(
    panels: list[tuple[str, Embeddings, np.ndarray, np.ndarray]],
    queries: list[tuple[int, str]],
    candidates: np.ndarray,
    images: DisplayImages,
    title: str,
):
    """panels: (title, embeddings, neighbour indices, scores) per run, neighbours of `candidates`."""
    theme()
    k = panels[0][2].shape[1]
    n = len(queries)
    fig = plt.figure(figsize=(len(panels) * (k + 1) * 1.25 + 0.6, n * 1.5 + 1.4), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(1, len(panels), wspace=0.04))
    for sub, (name, e, nn_idx, nn_score) in zip(subfigs, panels):
        axes = sub.subplots(n, k + 1, squeeze=False)
        for r, (pos, why) in enumerate(queries):
            q = int(candidates[pos])
            label = e.labels[q]
            hits = e.labels[nn_idx[pos]] == label
            ax = axes[r, 0]
            _show(ax, images.image(e.rows[q]), QUERY)
            ax.set_ylabel(f"Q{r + 1}: {why}", fontsize=8)
            ax.set_xlabel(f"class {label}\n{int(hits.sum())}/{k} correct", fontsize=8)
            for j in range(k):
                ax = axes[r, j + 1]
                nb = int(nn_idx[pos, j])
                _show(ax, images.image(e.rows[nb]), CORRECT if hits[j] else WRONG)
                ax.set_xlabel(f"{nn_score[pos, j]:.3f}", fontsize=8)
        axes[0, 0].set_title("query", fontsize=9)
        for j in range(k):
            axes[0, j + 1].set_title(f"#{j + 1}", fontsize=9)
        sub.suptitle(name, fontsize=11, fontweight="bold")
    fig.suptitle(title, fontsize=12, fontweight="bold")
    handles = [
        Patch(facecolor="none", edgecolor=QUERY, linewidth=3, label="query"),
        Patch(facecolor="none", edgecolor=CORRECT, linewidth=3, label="neighbour of the query's class"),
        Patch(facecolor="none", edgecolor=WRONG, linewidth=3, label="neighbour of another class"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False, fontsize=9,
               title="number under a neighbour = cosine similarity to the query", title_fontsize=9)
    return fig


# -- prototype assignment maps ------------------------------------------------------------------
def prototype_colours(K: int) -> list:
    if K <= 10:
        base = list(plt.get_cmap("tab10").colors)
    elif K <= 20:
        base = list(plt.get_cmap("tab20").colors)
    elif K <= 60:
        base = [*plt.get_cmap("tab20").colors, *plt.get_cmap("tab20b").colors, *plt.get_cmap("tab20c").colors]
    else:
        import seaborn as sns

        base = sns.color_palette("husl", K)
    return base[:K]


def compute_assignments(model, xml_state: dict, xml_cfg: dict, batch, device="cpu") -> np.ndarray:
    """(b, K, h, w) soft prototype assignments of a batch of normalised images."""
    import torch

    from xbml.models.prototype_pooling import PrototypeAssignment

    protos = xml_state["assign.prototypes"]
    # checkpoints from before the `features` key assigned backbone locations
    assign = PrototypeAssignment(protos.shape[1], protos.shape[0], float(xml_cfg["assignment_scale"]),
                                 xml_cfg.get("features", "backbone"))
    assign.load_state_dict({"prototypes": protos})
    model.eval().to(device)
    assign.to(device)
    out = []
    with torch.no_grad():
        for start in range(0, len(batch), 64):
            fmap = model(batch[start : start + 64].to(device)).feature_map
            out.append(assign.maps(fmap, getattr(model, "head", None)).cpu())
    return torch.cat(out).numpy()


def _scale_max(values: np.ndarray) -> float:
    """Top of a colour scale for assignment weights: soft assignments rarely get near 1, so the
    scale ends at the largest shown weight, rounded up to a tenth."""
    return float(min(1.0, max(0.1, math.ceil(float(np.max(values)) * 10) / 10)))


def _upsample(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of an (h, w) map to the image size, cell by cell."""
    h, w = a.shape
    ys = np.minimum((np.arange(shape[0]) * h) // shape[0], h - 1)
    xs = np.minimum((np.arange(shape[1]) * w) // shape[1], w - 1)
    return a[ys][:, xs]


def prototype_map_figure(images: list[np.ndarray], labels: list, assign: np.ndarray, title: str):
    """Per image: the image, its argmax prototype per location, and the assignment confidence."""
    theme()
    n, K = len(images), assign.shape[1]
    colours = prototype_colours(K)
    cmap = ListedColormap(colours)
    legend_rows = math.ceil(len(np.unique(assign.argmax(axis=1))) / 12)
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n + 1.9, 3 * 1.6 + 1.1 + 0.3 * legend_rows), layout="constrained",
                             squeeze=False)
    used = set()
    conf_im = None
    top = _scale_max(assign.max(axis=1))
    for j, (img, label, a) in enumerate(zip(images, labels, assign)):
        arg = _upsample(a.argmax(axis=0), img.shape[:2])
        conf = _upsample(a.max(axis=0), img.shape[:2])
        used.update(np.unique(a.argmax(axis=0)).tolist())
        _show(axes[0, j], img)
        axes[0, j].set_title(f"class {label}", fontsize=9)
        _show(axes[1, j], img)
        axes[1, j].imshow(arg, cmap=cmap, vmin=-0.5, vmax=K - 0.5, alpha=0.6, interpolation="nearest")
        _show(axes[2, j], img)
        conf_im = axes[2, j].imshow(conf, cmap="viridis", vmin=0, vmax=top, alpha=0.7, interpolation="nearest")
    axes[0, 0].set_ylabel("image", fontsize=9)
    axes[1, 0].set_ylabel("argmax prototype", fontsize=9)
    axes[2, 0].set_ylabel("assignment weight\nof that prototype", fontsize=9)
    fig.colorbar(conf_im, ax=axes[2, :].tolist(), shrink=0.95, aspect=12, pad=0.01,
                 label=f"largest weight $a_k$\n(scale 0-{top:g})")
    handles = [Patch(facecolor=colours[k], label=f"P{k}") for k in sorted(used)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 12), fontsize=8,
               title="prototype (colour of the argmax map)", title_fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=12, fontweight="bold")
    return fig


def prototype_usage_figure(images: list[np.ndarray], assign: np.ndarray, title: str, top: int = 5, per: int = 6):
    """Share of locations per prototype, and for the prototypes whose share varies most across
    images, the images that use them most with that prototype's assignment map."""
    theme()
    hist = assign.mean(axis=(2, 3))  # (b, K): each image's histogram pi
    usage = hist.mean(axis=0)
    K = assign.shape[1]
    picked = [int(k) for k in np.lexsort((np.arange(K), -hist.std(axis=0)))[:top]]
    per = min(per, len(images))
    colours = prototype_colours(K)
    fig = plt.figure(figsize=(max(9.0, 1.5 * per + 2.4), 3.1 + 1.55 * len(picked)), layout="constrained")
    top_fig, grid_fig = fig.subfigures(2, 1, height_ratios=[2.8, 1.55 * len(picked)])
    ax = top_fig.subplots()
    bars = ax.bar(np.arange(K), usage * 100, color=[colours[k] for k in range(K)], edgecolor="black", linewidth=0.4)
    for k in picked:
        bars[k].set_hatch("//")
    ax.set_xlabel("prototype")
    ax.set_ylabel("mean share of locations (%)")
    ax.set_xticks(np.arange(K), [f"P{k}" for k in range(K)], rotation=90 if K > 16 else 0, fontsize=8)
    ax.set_xlim(-0.6, K - 0.4)
    ax.set_title("how much of the test images each prototype explains (hatched: shown below)", fontsize=10)
    axes = grid_fig.subplots(len(picked), per, squeeze=False)
    heat = None
    shown = [np.lexsort((np.arange(len(hist)), -hist[:, k]))[:per] for k in picked]
    vmax = _scale_max(np.concatenate([assign[best, k].ravel() for best, k in zip(shown, picked)]))
    for r, (k, best) in enumerate(zip(picked, shown)):
        for j, i in enumerate(best):
            img = images[i]
            _show(axes[r, j], img, colours[k], 3.0)
            heat = axes[r, j].imshow(_upsample(assign[i, k], img.shape[:2]), cmap="inferno", vmin=0, vmax=vmax,
                                     alpha=0.6, interpolation="nearest")
            axes[r, j].set_xlabel(f"share {hist[i, k]:.1%}", fontsize=8)
        axes[r, 0].set_ylabel(f"P{k}\nmean {usage[k]:.1%}", fontsize=9)
    grid_fig.colorbar(heat, ax=axes.ravel().tolist(), shrink=0.5, aspect=15, pad=0.01,
                      label=r"assignment weight $a_k$ (scale 0-" + f"{vmax:g})")
    grid_fig.suptitle("images that use a prototype most, with its assignment map", fontsize=10)
    fig.suptitle(title, fontsize=12, fontweight="bold")
    return fig


# -- t-SNE --------------------------------------------------------------------------------------
def tsne_classes(labels: np.ndarray, n: int, seed: int = PICTURE_SEED) -> np.ndarray:
    classes = np.unique(labels)
    if len(classes) <= n:
        return classes
    return np.sort(np.random.default_rng(seed).choice(classes, size=n, replace=False))


def tsne_2d(emb: np.ndarray, seed: int = PICTURE_SEED) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = len(emb)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed).fit_transform(emb.astype(np.float64))


def tsne_figure(panels: list[tuple[str, np.ndarray, np.ndarray]], title: str):
    """panels: (title, 2-d points, labels) per run; the same classes in each, coloured alike."""
    import seaborn as sns

    theme()
    classes = np.unique(np.concatenate([p[2] for p in panels]))
    if len(classes) <= 10:
        palette = sns.color_palette("tab10", len(classes))
    elif len(classes) <= 20:  # strong shades first, their light partners after
        tab20 = sns.color_palette("tab20", 20)
        palette = (tab20[0::2] + tab20[1::2])[: len(classes)]
    else:
        palette = sns.color_palette("husl", len(classes))
    colour = {c: palette[i] for i, c in enumerate(classes)}
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels) + 0.4, 6.4), layout="constrained",
                             squeeze=False)
    for ax, (name, xy, labels) in zip(axes[0], panels):
        for c in classes:
            m = labels == c
            ax.scatter(xy[m, 0], xy[m, 1], s=18, color=colour[c], label=str(c), alpha=0.85, linewidths=0)
        ax.set_title(name, fontsize=11)
        ax.set_xlabel("t-SNE 1 (arbitrary units)")
        ax.set_ylabel("t-SNE 2 (arbitrary units)")
        ax.set_aspect("equal", adjustable="datalim")
    handles = [Patch(color=colour[c], label=str(c)) for c in classes]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(classes), 10), fontsize=8,
               title="test class", title_fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=12, fontweight="bold")
    return fig
