"""Hostile and mistaken config input through `xbml train --print-config`: bounded reading (size,
time, memory), every --set parse error named, integer keys, and loss parameters checked
against the pytorch-metric-learning class before any training."""

from __future__ import annotations

import time

import pytest

from faults import cli, error_line, xbml
from xbml.config import load_config
from xbml.errors import ConfigError
from xbml.yaml_reading import MAX_CONFIG_BYTES

# nine levels of ten aliases each: 10**9 list items if expanded
ALIAS_BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    + ["xml:", "  weight: *a8"]
)


def _print_config(capsys, tmp_path, *args):
    return cli(capsys, "train", *args, "--out", tmp_path / "run", "--print-config")


@pytest.mark.parametrize(
    "make, fragments",
    [
        (lambda d: d, ("is a folder",)),
        (lambda d: "/dev/zero", ("not a regular file",)),
        (lambda d: _write(d / "c.yaml", bytes(range(256)) * 8), ("not a text file",)),
        (lambda d: _write(d / "c.yaml", b"# " + b"x" * (MAX_CONFIG_BYTES + 10)), ("more than the", "bytes")),
        (lambda d: _write(d / "c.yaml", b"xml: {weight: [0.1\n"), ("not valid YAML", "line")),
        (lambda d: _write(d / "c.yaml", b"base: /dev/zero\n"), ("/dev/zero", "not a regular file")),
        (lambda d: _write(d / "c.yaml", b"base: {a: 1}\n"), ("'base:'",)),
        (lambda d: d / "missing.yaml", ("does not exist",)),
    ],
    ids=["folder", "dev-zero", "binary", "multi-megabyte", "bad-yaml", "base-dev-zero", "base-not-path", "missing"],
)
def test_a_config_that_is_no_yaml_text_is_refused_by_name(capsys, tmp_path, make, fragments):
    code, err = _print_config(capsys, tmp_path, "--config", make(tmp_path))
    error_line(code, err, *fragments)
    assert not (tmp_path / "run").exists()


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_an_alias_bomb_is_refused_at_once_and_not_expanded_into_the_message(tmp_path):
    # a subprocess with a deadline: before, this expanded for minutes inside the error message
    (tmp_path / "bomb.yaml").write_text(ALIAS_BOMB)
    start = time.perf_counter()
    res = xbml("train", "--config", tmp_path / "bomb.yaml", "--out", tmp_path / "run", "--print-config", timeout=60)
    line = error_line(res.returncode, res.stderr, "alias", "line 2")
    assert time.perf_counter() - start < 60 and len(line) < 400


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("xml.weight=[0.1", ("--set xml.weight", "not valid YAML")),
        ("xml.weight=!!python/object/apply:os.system [echo]", ("--set xml.weight", "not valid YAML")),
        ("xml.weight=*nothing", ("--set xml.weight",)),
        ("xml..weight=0.1", ("empty part",)),
        ("xmlweight", ("key.sub=value",)),
        ("data.fold=1.5", ("data.fold", "whole fold number")),
        ("data.fold=true", ("data.fold",)),
        ("loss.params={alpha: abc}", ("loss.params.alpha", "MultiSimilarityLoss", "finite number")),
        ("loss.params={alpah: 2}", ("'alpah'", "not a parameter of MultiSimilarityLoss", "alpha")),
        ("loss.miner_params={epsilon: 0.2}", ("loss.miner_params is given but no miner",)),
    ],
)
def test_every_bad_override_is_named(capsys, tmp_path, override, fragments):
    code, err = _print_config(capsys, tmp_path, "--set", override)
    error_line(code, err, *fragments)


def test_a_huge_value_is_not_echoed_whole(capsys, tmp_path):
    code, err = _print_config(capsys, tmp_path, "--set", "optim.name=" + "x" * 100_000)
    line = error_line(code, err, "optim.name", "...")
    assert len(line) < 400


def test_valid_loss_params_and_yaml_still_load(tmp_path):
    (tmp_path / "base.yaml").write_text("xml: {weight: 0.1}\n")
    (tmp_path / "c.yaml").write_text("base: base.yaml\nloss: {name: triplet, params: {margin: 0.2}}\n")
    cfg = load_config(tmp_path / "c.yaml", ["data.fold=2", "loss.miner=auto", "loss.miner_params={margin: 0.3}"])
    assert cfg["xml"]["weight"] == 0.1 and cfg["data"]["fold"] == 2
    assert cfg["loss"]["params"] == {"margin": 0.2}
    # a parameter pml's base class takes (through **kwargs) is a parameter too
    load_config(None, ["loss.params={collect_stats: true}"])
    with pytest.raises(ConfigError, match="loss.params.swap is 3; TripletMarginLoss expects true or false"):
        load_config(None, ["loss.name=triplet", "loss.params={swap: 3}"])
    with pytest.raises(ConfigError, match=r"loss.miner_params.epsilon is \[1\]; MultiSimilarityMiner expects a finite"):
        load_config(None, ["loss.miner=auto", "loss.miner_params={epsilon: [1]}"])
