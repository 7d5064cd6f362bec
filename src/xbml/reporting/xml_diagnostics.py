"""Did the XML regulariser learn? Its diagnostics from train_summary.json, per run over seeds.

Training writes `"xml": null` for a baseline and otherwise the block of `XML_KEYS`: the
XML prediction loss over the last 10% of iterations against chance, ln C (the loss of a
uniform guess over the C training classes; null when the prediction loss is not a softmax
over classes), and how the locations spread over the K prototypes. A regulariser whose
prediction loss never left chance gave the embedding no gradient worth having, so the
report says so before it says whether the XML run beat the baseline. Summaries written
before these diagnostics existed have no "xml" key: "not recorded".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

XML_KEYS = (
    "prediction_loss", "num_classes", "chance_loss", "final_loss_xml", "ratio_to_chance", "learned",
    "num_prototypes", "max_entropy", "final_assign_entropy", "final_effective_prototypes", "window_iterations",
)
NOT_RECORDED = "not recorded"


@dataclass
class RunDiagnostics:
    """The xml blocks of one XML run's seeds; `not_recorded` lists seeds whose summary has none."""

    run: str
    blocks: dict[int, dict] = field(default_factory=dict)
    not_recorded: list[int] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [float(b[key]) for b in self.blocks.values() if isinstance(b.get(key), (int, float))
                and not isinstance(b.get(key), bool) and math.isfinite(b[key])]

    def seeds_where(self, key: str, value) -> list[int]:
        return [s for s, b in self.blocks.items() if b.get(key) is value]


def xml_block(summary: dict):
    """A summary's "xml" block: a dict, None (a baseline), or NOT_RECORDED (an older summary)."""
    if "xml" not in summary:
        return NOT_RECORDED
    block = summary["xml"]
    return block if block is None or isinstance(block, dict) else NOT_RECORDED


def collect(seed_summaries: dict[int, dict], run: str, uses_xml: bool) -> RunDiagnostics | None:
    """One run's diagnostics from {seed: train summary}; None for a run without the regulariser."""
    diag = RunDiagnostics(run)
    for seed, summary in sorted(seed_summaries.items()):
        block = xml_block(summary)
        if isinstance(block, dict):
            diag.blocks[seed] = block
        elif uses_xml:  # a configured XML run without a block: older training code, or a summary that is missing
            diag.not_recorded.append(seed)
    return diag if diag.blocks or diag.not_recorded else None


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
    """What the XML prediction loss did in one run, in one sentence."""
    if not diag.blocks:
        return (f"{diag.run}: XML diagnostics {NOT_RECORDED} (train_summary.json of {_seeds(diag.not_recorded)} has no "
                "\"xml\" entry; retrain with the current code to get them).")
    chance = diag.values("chance_loss")
    never = diag.seeds_where("learned", False)
    learned = diag.seeds_where("learned", True)
    window = "the last 10% of iterations"
    ratios = [float(b["ratio_to_chance"]) for s, b in diag.blocks.items()
              if s not in never and isinstance(b.get("ratio_to_chance"), (int, float))]
    if chance and never and not learned:
        flat = [float(diag.blocks[s]["ratio_to_chance"]) for s in never
                if isinstance(diag.blocks[s].get("ratio_to_chance"), (int, float))]
        ended = f"; it ended at {_spread(flat)[0]} \u00d7 chance over {window}" if flat else ""
        text = (f"{diag.run}: the XML prediction loss never left chance (ln C = {chance[0]:.2f}{ended}): "
                "the regulariser had no effect in this run")
    elif chance and ratios:
        mean, spread = _spread(ratios)
        text = (f"{diag.run}: the XML prediction loss fell to {mean} \u00d7 chance (ln C = {chance[0]:.2f}) "
                f"over {window}{spread}")
        if never:
            text += f"; in {_seeds(never)} it never left chance: the regulariser had no effect there"
    elif diag.values("final_loss_xml"):
        losses = diag.values("final_loss_xml")
        kinds = sorted({str(b.get("prediction_loss")) for b in diag.blocks.values()})
        mean, spread = _spread(losses)
        text = (f"{diag.run}: the XML prediction loss ended at {mean} over {window}{spread}; its prediction loss "
                f"({', '.join(kinds)}) is not a softmax over classes, so there is no chance level to compare with")
    else:
        text = f"{diag.run}: the XML diagnostics of {_seeds(sorted(diag.blocks))} hold no final XML loss"
    if diag.not_recorded:
        text += f"; {_seeds(diag.not_recorded)}: {NOT_RECORDED}"
    return text + "."


def seed_rows(diag: RunDiagnostics) -> list[dict]:
    """One row per seed for the diagnostics table (None where a value is not recorded)."""
    rows = [{"run": diag.run, "seed": s, "recorded": True, **{k: b.get(k) for k in XML_KEYS}}
            for s, b in sorted(diag.blocks.items())]
    rows += [{"run": diag.run, "seed": s, "recorded": False, **{k: None for k in XML_KEYS}} for s in diag.not_recorded]
    return rows
