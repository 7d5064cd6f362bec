"""YAML read with bounds a hostile or mistaken file cannot break: a size cap, regular text files
only, no aliases, and values shown in messages only in part.

A config is a few kilobytes of plain text, so anything else (a folder, /dev/zero, a binary, a
multi-megabyte file) is refused by name before it is read. YAML aliases are refused outright:
nested aliases ("billion laughs") expand exponentially, and a config never needs them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from xbml.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: hundreds of times the largest config shipped
_SHOWN = 80  # characters of a value echoed into a message


def shown(value, limit: int = _SHOWN) -> str:
    """repr(value) cut to `limit` characters: a message never grows with the input (whose size
    the file cap and the refused aliases already bound)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (and so merge keys `<<: *x`) at the first one."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"{self.name}: line {event.start_mark.line + 1}: YAML alias *{event.anchor[:40]} is not "
                "allowed in a config (aliases can expand without bound); write the value out"
            )
        return super().compose_node(parent, index)


def _load(text: str, name: str):
    loader = _NoAliasLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _problem_line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem[:_SHOWN]}"


def read_yaml_file(path: Path, what: str = "config file"):
    """The YAML document in `path`: a regular UTF-8 text file of at most MAX_CONFIG_BYTES."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{what} {path} is a folder; give the path of a YAML file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file (a device or pipe?); give the path of a YAML file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{what} {path} is {info.st_size:,} bytes, more than the {MAX_CONFIG_BYTES:,} a config may have; "
            "is it the right file?"
        )
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)  # the file may grow after the stat
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{what} {path} is larger than the {MAX_CONFIG_BYTES:,} bytes a config may have")
        if b"\0" in raw:
            raise UnicodeDecodeError("utf-8", raw, raw.index(b"\0"), raw.index(b"\0") + 1, "NUL byte")
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a text file (binary content); give the path of a YAML file") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        return _load(text, str(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {_problem_line(exc)}") from None


def parse_yaml_value(text: str, where: str):
    """One YAML value given on the command line (`--set key=value`), named in any error."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: the value is longer than {MAX_CONFIG_BYTES:,} characters")
    try:
        return _load(text, where)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{where}: the value {shown(text)} is not valid YAML ({_problem_line(exc)}); quote a plain "
            "string, e.g. key='text'"
        ) from None
