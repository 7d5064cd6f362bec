"""The report's pictures of what the embeddings do: retrieval examples, t-SNE and the XML
prototype maps and usage, drawn for the runs and seed the analysis chose (they need the runs'
test embeddings and model.pt, and torch)."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

import numpy as np

from xbml.errors import XbmlError
from xbml.reporting.analysis import Analysis
from xbml.reporting.figures import Figure, drawn, placeholder

PICTURES = ("retrieval.png", "tsne.png", "prototype_maps.png", "prototype_usage.png")


@dataclass
class Inputs:
    """The test embeddings of the shown runs and the images they index, loaded once."""

    embs: dict
    images: object
    why: str  # which seed, and why that contender


def draw(a: Analysis, threads: int = 0) -> list[Figure]:
    if "test" not in a.splits:
        return [placeholder(n, "the metrics table has no test split") for n in PICTURES]
    loaded = {}

    def inputs() -> Inputs:
        # loaded on first use: a figure that is disabled or does not apply needs no embeddings
        if "inputs" not in loaded:
            try:
                loaded["inputs"] = _inputs(a, threads)
            except (XbmlError, FileNotFoundError, OSError) as exc:
                loaded["inputs"] = exc
        if isinstance(loaded["inputs"], Exception):
            raise loaded["inputs"]
        return loaded["inputs"]

    out = []
    for names, fn in ((PICTURES[:1], _retrieval), (PICTURES[1:2], _tsne), (PICTURES[2:], _prototypes)):
        try:
            out += fn(a, inputs)
        except (XbmlError, FileNotFoundError, OSError) as exc:
            out += [placeholder(n, f"cannot draw: {exc}") for n in names]
    return out


def _inputs(a: Analysis, threads: int) -> Inputs:
    from xbml.reporting import pictures

    p = a.pictures
    if p.seed is None:
        raise XbmlError(p.problem)
    folders = {n: a.folder(n, p.seed) for n in p.shown}
    embs = {n: pictures.load_embeddings(folders[n] / "embeddings_test.npz") for n in p.shown}
    if p.contender and not pictures.aligned(embs[p.reference], embs[p.contender]):
        raise XbmlError(f"the test embeddings of {p.reference} and {p.contender} list different images")
    model = folders[p.reference] / "model.pt"
    if not model.is_file():  # before torch's import (3 CPU-s), which a report that cannot draw skips
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(model))
    import torch

    from xbml.training.device import job_threads, set_threads

    set_threads(job_threads(threads))  # here, where torch is first needed: a refused report never imports it
    blob = torch.load(model, map_location="cpu", weights_only=True)
    images = pictures.DisplayImages(blob["config"]["data"], a.prepared)
    why = f"seed {p.seed}" + (f"; {p.contender} has the best validation MAP@R among the other runs"
                              if p.contender and "val" in a.splits else "")
    return Inputs(embs, images, why)


def _retrieval(a: Analysis, load) -> list[Figure]:
    from xbml.reporting import pictures

    name, rc, p = "retrieval.png", a.report_cfg, a.pictures
    if rc["retrieval_queries"] == 0:
        return [placeholder(name, "disabled (report.retrieval_queries = 0)")]
    inputs = load()
    e = inputs.embs[p.reference]
    cand = pictures.candidate_queries(e)
    panels, hits = [], []
    for n in p.shown:
        idx, score = pictures.nearest_neighbours(inputs.embs[n], cand, rc["retrieval_k"])
        panels.append((f"{n} (seed {p.seed})", inputs.embs[n], idx, score))
        hits.append(inputs.embs[n].labels[idx] == inputs.embs[n].labels[cand][:, None])
    chosen = pictures.choose_queries(hits, rc["retrieval_queries"])
    protocol = "query vs gallery" if e.query is not None else "query = reference set minus the query"
    fig = pictures.retrieval_figure(panels, chosen, cand, inputs.images,
                                    f"{a.dataset}: top-{rc['retrieval_k']} neighbours of test queries ({protocol})")
    if p.contender:
        shown = (f"Left {p.reference}, right {p.contender} ({inputs.why}), the same queries: those where their "
                 "precision among the shown neighbours differs most, then random ones (fixed RNG seed).")
    else:
        shown = f"Run {p.reference}, {inputs.why}; random queries (fixed RNG seed)."
    return [drawn(name, fig, details=f"Protocol: {protocol}; {rc['retrieval_k']} neighbours per query. {shown}")]


def _tsne(a: Analysis, load) -> list[Figure]:
    from xbml.reporting import pictures

    name, p = "tsne.png", a.pictures
    if a.report_cfg["tsne_classes"] == 0:
        return [placeholder(name, "disabled (report.tsne_classes = 0)")]
    inputs = load()
    classes = pictures.tsne_classes(inputs.embs[p.reference].labels, a.report_cfg["tsne_classes"])
    panels = []
    for n in p.shown:
        e = inputs.embs[n]
        m = np.isin(e.labels, classes)
        panels.append((f"{n} (seed {p.seed}, test MAP@R {a.mean(n, 'test'):.3f})", pictures.tsne_2d(e.embeddings[m]),
                       e.labels[m]))
    fig = pictures.tsne_figure(panels, f"{a.dataset}: t-SNE of test embeddings ({len(classes)} classes)")
    return [drawn(name, fig, details=f"{len(classes)} classes; {inputs.why}.")]


def _prototype_model(a: Analysis):
    """(run, seed, model, blob) of the first shown run (contender first), then any other, whose
    model.pt holds XML prototypes; None when none does."""
    from xbml.inference import load_trained_model

    p = a.pictures
    for name in list(reversed(p.shown)) + [r for r in a.order if r not in p.shown]:
        try:
            s = p.seed if name in p.shown else a.common_seed([name])
        except XbmlError:
            continue
        path = a.folder(name, s) / "model.pt"
        if not path.exists():
            continue
        model, blob = load_trained_model(path)
        if (blob.get("regularizer_state") or {}).get("xml"):
            return name, s, model, blob
    return None


def _prototypes(a: Analysis, load) -> list[Figure]:
    names = PICTURES[2:]
    if not any(d.name == "xml" for d in a.regularizers):
        return [placeholder(n, "no run of this report trains with XML") for n in names]
    if a.report_cfg["prototype_images"] == 0:
        return [placeholder(n, "disabled (report.prototype_images = 0)") for n in names]
    inputs = load()
    chosen = _prototype_model(a)
    if chosen is None:
        return [placeholder(n, "no run of this report has XML prototypes (regularizer_state) in its model.pt")
                for n in names]
    import torch

    from xbml.reporting import pictures

    name, s, model, blob = chosen
    e = inputs.embs.get(name) or pictures.load_embeddings(a.folder(name, s) / "embeddings_test.npz")
    rng = np.random.default_rng(pictures.PICTURE_SEED)
    pick = np.sort(rng.choice(len(e.rows), size=min(a.report_cfg["prototype_images"], len(e.rows)), replace=False))
    batch = torch.stack([inputs.images.tensor(e.rows[i]) for i in pick])
    assign = pictures.compute_assignments(model, blob["regularizer_state"]["xml"], blob["config"]["xml"], batch, a.device)
    shown_imgs = [inputs.images.to_display(x) for x in batch]
    labels = e.labels[pick]
    K, (h, w) = assign.shape[1], assign.shape[2:]
    first, seen = [], set()
    for i, c in enumerate(labels):
        if c not in seen:
            seen.add(c)
            first.append(i)
        if len(first) == 8:
            break
    maps = pictures.prototype_map_figure([shown_imgs[i] for i in first], [labels[i] for i in first], assign[first],
                                         f"{a.dataset}: prototype assignments of {name} (seed {s}), K = {K}")
    usage = pictures.prototype_usage_figure(shown_imgs, assign, f"{a.dataset}: prototype usage of {name} (seed {s})")
    return [
        drawn(names[0], maps, details=f"Run {name}, seed {s}, prototypes of its last iteration: K = {K}, "
                                      f"{h}\u00d7{w} feature-map locations, assignment scale s = "
                                      f"{blob['config']['xml']['assignment_scale']:g}."),
        drawn(names[1], usage, details=f"Run {name}, seed {s}: {len(pick)} test images (fixed RNG seed)."),
    ]
