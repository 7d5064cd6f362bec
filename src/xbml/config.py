"""Training configuration: explicit defaults, YAML files that may inherit, dotted overrides.

Every key that exists is in DEFAULTS; anything else is rejected by name, so a
typo (`xml.lamda`) can never silently fall back to a default.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from xbml.errors import ConfigError

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
    },
    "model": {
        "backbone": "glyph_convnet",
        "pretrained": False,
        # local file with ImageNet weights; None = torchvision's cache, never downloaded
        "weights_path": None,
        "embedding_dim": 64,
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
    "xml": {
        # w in method.md: total = (1 - w) * base + w * prediction; 0 disables the regulariser
        "weight": 0.0,
        "num_prototypes": 32,
        "assignment_scale": 10.0,
        "ridge_lambda": 0.05,
        "target": "class_proxy",
        "prediction_loss": "proxy_softmax",
        "proxy_scale": 9.5,
        # compute the regulariser even at weight 0 (proves the paired-run property in tests)
        "force_compute": False,
    },
    "optim": {
        "name": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        # learning rate of the XML parameters (prototypes, class vectors) relative to lr
        "xml_lr_multiplier": 1.0,
        "warmup_iterations": 0,
        "schedule": "constant",
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
        dotted = ".".join(where)
        if key not in defaults:
            valid = ", ".join(sorted(defaults))
            raise ConfigError(f"unknown config key {dotted!r}; valid keys here: {valid}")
        default = defaults[key]
        if where in FREE_FORM:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {dotted!r} must be a mapping, got {value!r}")
            continue
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {dotted!r} must be a mapping of sub-keys, got {value!r}")
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
                f"config key {dotted!r} must be of type {type(default).__name__}, got {value!r}"
            )


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
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    base = data.pop("base", None)
    if base is not None:
        data = merge(_load_file(path.parent / base, seen + (path,)), data)
    return data


def parse_override(text: str) -> dict:
    """`xml.weight=0.1` -> {"xml": {"weight": 0.1}}; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else None
    out: dict = {}
    node = out
    parts = key.strip().split(".")
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
    _check(user, DEFAULTS)
    cfg = merge(DEFAULTS, user)
    validate_values(cfg)
    return cfg


def validate_values(cfg: dict) -> None:
    xml = cfg["xml"]
    if not 0.0 <= xml["weight"] <= 1.0:
        raise ConfigError(f"xml.weight must be in [0, 1], got {xml['weight']}")
    if xml["target"] not in ("class_proxy", "embedding"):
        raise ConfigError(f"xml.target must be 'class_proxy' or 'embedding', got {xml['target']!r}")
    if xml["prediction_loss"] not in ("proxy_softmax", "base"):
        raise ConfigError(
            f"xml.prediction_loss must be 'proxy_softmax' or 'base', got {xml['prediction_loss']!r}"
        )
    if xml["ridge_lambda"] <= 0:
        raise ConfigError("xml.ridge_lambda must be > 0 (it keeps the ridge system invertible)")
    if xml["num_prototypes"] < 1:
        raise ConfigError("xml.num_prototypes must be >= 1")
    s = cfg["sampler"]
    if s["classes_per_batch"] < 2 or s["classes_per_batch"] % 2:
        raise ConfigError(
            "sampler.classes_per_batch must be even and >= 2: the batch is split into two class-disjoint halves"
        )
    if s["images_per_class"] < 2:
        raise ConfigError("sampler.images_per_class must be >= 2 so every anchor has a positive")
    t = cfg["train"]
    for key in ("iterations", "checkpoint_every", "eval_every"):
        if t[key] < 1:
            raise ConfigError(f"train.{key} must be >= 1, got {t[key]}")
    for key in ("amp", "channels_last"):
        if t[key] not in ("auto", True, False):
            raise ConfigError(f"train.{key} must be auto, true or false")


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=True)
