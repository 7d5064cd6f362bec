"""Did each regulariser learn? Its diagnostics from train_summary.json, per run over seeds.

Training writes `"regularizers": {}` for a baseline and otherwise one block per regulariser
(xbml.regularizers.summarise): its label, its loss over the last 10% of iterations against
chance (the loss of a uniform guess, e.g. ln C for XML's softmax over the C training classes;
null where none is defined), whether it learned, its diagnostics there and its facts. A
regulariser whose loss never left chance gave the embedding no gradient worth having, so the
report says so before it says whether the run beat the baseline. A seed whose summary lacks the
block another seed of the run has is "not recorded".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

NOT_RECORDED = "not recorded"


@dataclass
class RunDiagnostics:
    """One regulariser's blocks over one run's seeds; `not_recorded` lists seeds without one."""

    run: str
    name: str  # the regulariser (its config block)
    blocks: dict[int, dict] = field(default_factory=dict)
    not_recorded: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        for b in self.blocks.values():
            if isinstance(b.get("label"), str):
                return b["label"]
        return f"{self.name} loss"

    def values(self, key: str) -> list[float]:
        return [float(b[key]) for b in self.blocks.values() if _number(b.get(key))]

    def seeds_where(self, key: str, value) -> list[int]:
        return [s for s, b in self.blocks.items() if b.get(key) is value]

    def diagnostic_labels(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for b in self.blocks.values():
            for key, d in (b.get("diagnostics") or {}).items():
                out.setdefault(key, d.get("label", key) if isinstance(d, dict) else key)
        return out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def blocks_of(summary: dict) -> dict[str, dict]:
    """A summary's regulariser blocks by name ({} for a baseline or a summary without any)."""
    blocks = summary.get("regularizers")
    return {k: v for k, v in blocks.items() if isinstance(v, dict)} if isinstance(blocks, dict) else {}


def collect(seed_summaries: dict[int, dict], run: str) -> list[RunDiagnostics]:
    """One run's diagnostics per regulariser, from {seed: train summary}; [] for a baseline."""
    names = list(dict.fromkeys(n for s in seed_summaries.values() for n in blocks_of(s)))
    out = []
    for name in names:
        diag = RunDiagnostics(run, name)
        for seed, summary in sorted(seed_summaries.items()):
            block = blocks_of(summary).get(name)
            if block is None:
                diag.not_recorded.append(seed)
            else:
                diag.blocks[seed] = block
        out.append(diag)
    return out


def _seeds(seeds: list[int]) -> str:
    return f"seed{'s' if len(seeds) != 1 else ''} {', '.join(str(s) for s in seeds)}"


def _spread(values: list[float], digits: int = 2) -> tuple[str, str]:
    """(the mean, ' (mean over n seeds, range lo-hi)' or '' for one seed)."""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}", ""
    lo, hi = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    spread = "" if lo == hi else f", range {lo}\u2013{hi}"
    return f"{mean:.{digits}f}", f" (mean over {len(values)} seeds{spread})"


def sentence(diag: RunDiagnostics) -> str:
    """What one regulariser's loss did in one run, in one sentence."""
    label = diag.label
    chance = diag.values("chance_loss")
    never = diag.seeds_where("learned", False)
    learned = diag.seeds_where("learned", True)
    window = "the last 10% of iterations"
    ratios = [float(b["ratio_to_chance"]) for s, b in diag.blocks.items()
              if s not in never and _number(b.get("ratio_to_chance"))]
    if chance and never and not learned:
        flat = [float(diag.blocks[s]["ratio_to_chance"]) for s in never if _number(diag.blocks[s].get("ratio_to_chance"))]
        ended = f"; it ended at {_spread(flat)[0]} \u00d7 chance over {window}" if flat else ""
        text = (f"{diag.run}: the {label} never left chance ({chance[0]:.2f}{ended}): the regulariser had no effect "
                "in this run")
    elif chance and ratios:
        mean, spread = _spread(ratios)
        text = f"{diag.run}: the {label} fell to {mean} \u00d7 chance ({chance[0]:.2f}) over {window}{spread}"
        if never:
            text += f"; in {_seeds(never)} it never left chance: the regulariser had no effect there"
    elif diag.values("final_loss"):
        mean, spread = _spread(diag.values("final_loss"))
        text = (f"{diag.run}: the {label} ended at {mean} over {window}{spread}; it has no chance level to compare "
                "with")
    else:
        text = f"{diag.run}: the {label} diagnostics of {_seeds(sorted(diag.blocks))} hold no final loss"
    if diag.not_recorded:
        text += f"; {_seeds(diag.not_recorded)}: {NOT_RECORDED}"
    return text + "."


def seed_rows(diag: RunDiagnostics) -> list[dict]:
    """One row per seed for the diagnostics table (None where a value is not recorded)."""
    keys = ("chance_loss", "final_loss", "ratio_to_chance", "learned")
    labels = diag.diagnostic_labels()
    rows = []
    for s, b in sorted(diag.blocks.items()):
        own = b.get("diagnostics") or {}
        rows.append({"run": diag.run, "seed": s, "regularizer": diag.name, "label": diag.label, "recorded": True,
                     **{k: b.get(k) for k in keys},
                     "diagnostics": {labels[k]: (d.get("value") if isinstance(d, dict) else None)
                                     for k, d in own.items() if k in labels},
                     "facts": b.get("facts") or {}})
    rows += [{"run": diag.run, "seed": s, "regularizer": diag.name, "label": diag.label, "recorded": False,
              **{k: None for k in keys}, "diagnostics": {}, "facts": {}} for s in diag.not_recorded]
    return rows
