"""The results tree of one dataset, as the workflow config describes it.

Each run of `expand_runs` has its model folders under `results/{dataset}/{run}/` (`seed{seed}`,
or one `seed{seed}-fold{k}` per fold model under mlrc_4fold: see `xbml.workflow.plan.Run`) with
the files `xbml train`, `xbml embed` and `xbml evaluate` write. This module finds and reads them; nothing here imports torch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from xbml.errors import ConfigError, XbmlError
from xbml.metric_names import ALL_METRICS, METRIC_LABELS, PRIMARY_METRIC
from xbml.training.run_log import read_jsonl
from xbml.workflow.plan import SEPARATED, Run, expand_runs

# (column, label) of the retrieval metrics in the order tables show them
METRICS: tuple[tuple[str, str], ...] = tuple((m, METRIC_LABELS[m]) for m in ALL_METRICS)
PRIMARY = PRIMARY_METRIC
#: the splits of the metrics table in the order the report shows them, and their names there
SPLIT_LABELS = {
    "test": "Test",
    SEPARATED: "Test, fold models separately",
    "val": "Validation",
}
#: what each split's rows are, for the page
SPLIT_MEANINGS = {
    "test": "classes unseen in training",
    SEPARATED: "classes unseen in training; the mean over the 4 fold models, each evaluated alone",
    "val": "held-out training classes (model selection)",
}
LOSS_TERMS = ("loss", "loss_base", "loss_xml")
LOSS_LABELS = {"loss": "total loss", "loss_base": "base DML loss", "loss_xml": "XML prediction loss"}


def dataset_runs(config: dict, dataset: str) -> list[Run]:
    """The runs of `dataset` in config order (methods, then swept settings, then seeds)."""
    if dataset not in config["datasets"]:
        raise ConfigError(
            f"dataset {dataset!r} is not in the workflow config (datasets: {', '.join(config['datasets'])})"
        )
    return [r for r in expand_runs(config, check=False) if r.dataset == dataset]


def run_names(runs: list[Run]) -> list[str]:
    """Distinct run names (method or swept setting) in config order."""
    return list(dict.fromkeys(r.name for r in runs))


def swept_keys(runs: list[Run]) -> list[str]:
    """Every config key some method sweeps, in first-seen order."""
    return list(dict.fromkeys(k for r in runs for k, _ in r.swept))


def under(results: str | Path, path: str) -> Path:
    """A path of the plan (which starts with results/) under another results root."""
    return Path(results) / Path(path).relative_to("results")


def run_folder(results: str | Path, run: Run) -> Path:
    """`run.folder` under another results root."""
    return under(results, run.folder)


def read_text(path: Path, what: str, fix: str) -> str:
    """A file's text; a binary or otherwise non-UTF-8 file is an XbmlError, not a UnicodeDecodeError."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise XbmlError(f"{what} {path} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start:exc.start + 1]!r}: "
                        f"a binary or corrupted file); {fix}") from None


def read_json(path: Path, what: str, fix: str) -> dict:
    if not path.exists():
        raise XbmlError(f"{what} {path} is missing; {fix}")
    try:
        data = json.loads(read_text(path, what, fix))
    except json.JSONDecodeError as exc:
        raise XbmlError(f"{what} {path} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise XbmlError(f"{what} {path} must hold a JSON object; {fix}")
    return data


def metric_problem(value) -> str | None:
    """Why `value` is not a retrieval metric (a finite number in [0, 1]), or None when it is one."""
    if value is None:
        return "missing"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "not a number"
    if not math.isfinite(value):
        return "not finite"
    if not 0.0 <= value <= 1.0:
        return "outside [0, 1]"
    return None


def evaluate_fix(split: str) -> str:
    return f"run `python -m xbml embed` and `python -m xbml evaluate` for the {split} split of this run first"


def read_train_summary(folder: Path) -> dict:
    path = folder / "train_summary.json"
    if not path.exists():
        return {}
    return read_json(path, "training summary", "rerun `python -m xbml train` for this run")


def read_logs(folder: Path) -> tuple[list[dict], list[dict]]:
    """(train log, validation log) records; empty lists when a log is absent."""
    try:
        return read_jsonl(folder / "train_log.jsonl"), read_jsonl(folder / "val_log.jsonl")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise XbmlError(f"a log in {folder} is not valid JSON lines ({exc}); rerun training of this run") from None


def scalar(value):
    """A metric value as a float (None/NaN stay NaN); non-numbers give None."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None
