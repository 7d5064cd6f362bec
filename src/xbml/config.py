"""Training configuration: explicit defaults, YAML files that may inherit, dotted overrides.

Every key that exists is in `defaults()`: DEFAULTS plus one block per registered regulariser
(xbml.regularizers: `xml`, `xbm`, ...); anything else is rejected by name, so a typo
(`xml.lamda`) can never silently fall back to a default.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from xbml.errors import ConfigError
from xbml.yaml_reading import parse_yaml_value, read_yaml_file, shown

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "data": {
        # a prepared dataset folder (manifest.csv + dataset.json), see xbml.datasets.manifest
        "prepared": "data/prepared/glyphs",
        "image_size": 32,
        # eval images are resized to this before the centre crop (real images only)
        "resize": 256,
        "workers": 0,
        "train_augment": True,
        # use only the first N classes of each split (0 = all); for quick experiments and tests
        "max_classes": 0,
        "fold": None,
        # real images: `auto` reads the prepared image store when the dataset has one, `original`
        # the original files (the reference), `store` insists on the store
        "image_source": "auto",
        # real images from original files: `cpu` decodes in the loader workers, `device` reads the
        # JPEG bytes there and decodes each batch where the model runs (nvJPEG on CUDA)
        "decode": "cpu",
    },
    "model": {
        "backbone": "glyph_convnet",
        "pretrained": False,
        # local file with ImageNet weights; None = torchvision's cache, never downloaded
        "weights_path": None,
        "embedding_dim": 64,
        # BatchNorm frozen: statistics fixed and its parameters neither trained nor decayed
        # (the authors' setting with pretrained ResNets)
        "freeze_bn": False,
    },
    "loss": {
        "name": "multi_similarity",
        "params": {},
        "miner": None,
        "miner_params": {},
    },
    "sampler": {
        "classes_per_batch": 16,
        "images_per_class": 4,
    },
    "optim": {
        "name": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        # learning rate of a proxy base loss's proxies (proxy_nca, proxy_anchor) relative to lr:
        # proxies are usually trained ~100x faster than the network (Proxy-Anchor's setting)
        "base_loss_lr_multiplier": 100.0,
        "warmup_iterations": 0,
        # after the warm-up: constant, cosine (to final_lr_fraction x lr) or exponential (from lr
        # to final_lr_fraction x lr, the same factor every step)
        "schedule": "constant",
        "final_lr_fraction": 0.0,
        # clip the gradients' global norm to this value (0 = off; the authors clip at 10)
        "clip_grad_norm": 0.0,
    },
    "train": {
        "iterations": 1000,
        "checkpoint_every": 100,
        "eval_every": 200,
        "device": "auto",
        "amp": "auto",
        "channels_last": "auto",
        "threads": 0,
        "progress": True,
    },
    "eval": {
        "batch_size": 256,
    },
}

#: keys that moved: the old name is refused with the new one
MOVED = {("optim", "xml_lr_multiplier"): "xml.lr_multiplier"}


def defaults() -> dict[str, Any]:
    """DEFAULTS and the config block of every registered regulariser (its `weight`,
    `lr_multiplier` and its own keys)."""
    from xbml.regularizers import blocks

    return {**DEFAULTS, **{cls.name: cls.config_block() for cls in blocks()}}


# keys whose value is a free-form mapping passed on to a library
FREE_FORM = {("loss", "params"), ("loss", "miner_params")}
# keys that may be None or a value of a different type
NULLABLE = {
    ("data", "fold"),
    ("model", "weights_path"),
    ("loss", "miner"),
    ("train", "amp"),
    ("train", "channels_last"),
}


def _check(cfg: dict, defaults: dict, prefix: tuple[str, ...] = ()) -> None:
    for key, value in cfg.items():
        where = prefix + (key,)
        dotted = ".".join(shown(k, 40) if not isinstance(k, str) else k[:60] for k in where)
        if where in MOVED:
            raise ConfigError(f"config key {dotted!r} is now {MOVED[where]!r}; rename it")
        if key not in defaults:
            valid = ", ".join(sorted(defaults))
            raise ConfigError(f"unknown config key {dotted!r}; valid keys here: {valid}")
        default = defaults[key]
        if where in FREE_FORM:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {dotted!r} must be a mapping, got {shown(value)}")
            continue
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {dotted!r} must be a mapping of sub-keys, got {shown(value)}")
            _check(value, default, where)
            continue
        if where in NULLABLE or default is None:
            continue  # may be None or differ in type; validate_values checks what matters
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ConfigError(
                f"config key {dotted!r} must be of type {type(default).__name__}, got {shown(value)}"
            )


_SCIENTIFIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _coerce_scientific(cfg: dict, defaults: dict) -> None:
    """YAML 1.1 reads `1e-5` (no dot) as a string: make it the float the user meant, where a
    float belongs."""
    for key, value in cfg.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            _coerce_scientific(value, default)
        elif isinstance(default, float) and isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            cfg[key] = float(value)


def merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("params", "miner_params"):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_file(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config {path} inherits from itself through 'base:'")
    data = read_yaml_file(path) or {}  # bounded: a size cap, text only, no aliases
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    base = data.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"config file {path}: 'base:' is {shown(base)}; give the path of the config to inherit from")
    if base is not None:
        data = merge(_load_file(path.parent / base, seen + (path,)), data)
    return data


def parse_override(text: str) -> dict:
    """`xml.weight=0.1` -> {"xml": {"weight": 0.1}}; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {shown(text)} must look like key.sub=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {shown(text)}: the key {shown(key)} has an empty part; write key.sub=value")
    value = parse_yaml_value(raw, f"--set {key.strip()[:60]}") if raw != "" else None
    out: dict = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    user: dict = {}
    if path is not None:
        user = _load_file(Path(path))
    for text in overrides:
        user = merge(user, parse_override(text))
    known = defaults()
    _coerce_scientific(user, known)
    _check(user, known)
    cfg = merge(known, user)
    validate_values(cfg)
    return cfg


@dataclass(frozen=True)
class Interval:
    """A numeric domain; NaN and infinities are outside every interval."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def __str__(self) -> str:
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{left}{low}, {high}{right}"


POSITIVE, NON_NEGATIVE, AT_LEAST_ONE = Interval(0, low_open=True), Interval(0), Interval(1)

# the domain of every numeric key (a finite value inside the interval)
INTERVALS: dict[tuple[str, ...], Interval] = {
    ("seed",): NON_NEGATIVE,
    ("data", "image_size"): Interval(8),
    ("data", "resize"): AT_LEAST_ONE,
    ("data", "workers"): NON_NEGATIVE,
    ("data", "max_classes"): NON_NEGATIVE,
    ("model", "embedding_dim"): AT_LEAST_ONE,
    ("sampler", "classes_per_batch"): Interval(2),
    ("sampler", "images_per_class"): Interval(2),
    ("optim", "lr"): POSITIVE,
    ("optim", "weight_decay"): NON_NEGATIVE,
    ("optim", "base_loss_lr_multiplier"): POSITIVE,
    ("optim", "warmup_iterations"): NON_NEGATIVE,
    ("optim", "final_lr_fraction"): Interval(0, 1),
    ("optim", "clip_grad_norm"): NON_NEGATIVE,
    ("train", "iterations"): AT_LEAST_ONE,
    ("train", "checkpoint_every"): AT_LEAST_ONE,
    ("train", "eval_every"): AT_LEAST_ONE,
    ("train", "threads"): NON_NEGATIVE,
    ("eval", "batch_size"): AT_LEAST_ONE,
}

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "exponential")


def _choices() -> dict[tuple[str, ...], tuple]:
    """The domain of every enumerated key; component names come from their registries."""
    from xbml.losses.catalog import loss_names, miner_names
    from xbml.models.backbone_registry import BACKBONES

    return {
        ("model", "backbone"): tuple(BACKBONES.names()),
        ("loss", "name"): tuple(loss_names()),
        ("loss", "miner"): (None, "none", "auto", *miner_names()),
        ("optim", "name"): OPTIMIZERS,
        ("optim", "schedule"): SCHEDULES,
        ("data", "image_source"): ("auto", "store", "original"),
        ("data", "decode"): ("cpu", "device"),
        ("train", "amp"): ("auto", True, False),
        ("train", "channels_last"): ("auto", True, False),
    }


def _get(cfg: dict, key: tuple[str, ...]):
    for part in key:
        cfg = cfg[part]
    return cfg


def _domains() -> tuple[dict, dict]:
    """(INTERVALS, _choices()) with every registered regulariser's block added."""
    from xbml.regularizers import blocks

    intervals, choices = dict(INTERVALS), _choices()
    for cls in blocks():
        own_intervals, own_choices = cls.domains()
        intervals.update({(cls.name, k): v for k, v in own_intervals.items()})
        choices.update({(cls.name, k): v for k, v in own_choices.items()})
    return intervals, choices


def validate_values(cfg: dict) -> None:
    """Every value inside its domain, or a ConfigError naming the key, the value and the fix."""
    from xbml.regularizers import blocks

    intervals, choices = _domains()
    nullable = {(cls.name, key) for cls in blocks() for key in cls.nullable}
    for key, domain in intervals.items():
        value = _get(cfg, key)
        if key in nullable and value is None:
            continue
        if value not in domain:
            raise ConfigError(f"config key {'.'.join(key)!r} is {shown(value)}; it must be a finite number in {domain}")
    for cls in blocks():
        cls.check(cfg)
    for key, valid in choices.items():
        value = _get(cfg, key)
        # by type as well as value: `train.amp: 1` is not `true`
        if not any(type(value) is type(v) and value == v for v in valid):
            names = ", ".join("null" if v is None else str(v).lower() if isinstance(v, bool) else v for v in valid)
            raise ConfigError(f"config key {'.'.join(key)!r} is {shown(value)}; valid values: {names}")
    fold = cfg["data"]["fold"]
    if fold is not None and (not isinstance(fold, int) or isinstance(fold, bool) or fold not in NON_NEGATIVE):
        raise ConfigError(f"config key 'data.fold' is {shown(fold)}; use null or a whole fold number >= 0")
    if cfg["sampler"]["classes_per_batch"] % 2:
        raise ConfigError(
            "config key 'sampler.classes_per_batch' must be even: the batch is split into two class-disjoint halves"
        )
    optim, iterations = cfg["optim"], cfg["train"]["iterations"]
    if optim["warmup_iterations"] >= iterations:
        raise ConfigError(
            f"config key 'optim.warmup_iterations' is {optim['warmup_iterations']} but training has only "
            f"{iterations} iterations; use fewer warm-up iterations than train.iterations"
        )
    if optim["schedule"] == "exponential" and optim["final_lr_fraction"] <= 0:
        raise ConfigError(
            "config key 'optim.final_lr_fraction' is 0, which an exponential schedule never reaches; "
            "give the fraction of optim.lr to end at, e.g. 0.01"
        )
    from xbml.losses.params_check import check_loss_config

    check_loss_config(cfg["loss"])  # by name and type now, not at the first loss an hour in


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=True)
