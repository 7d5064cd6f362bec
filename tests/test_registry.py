"""Registries: eager registration, declared components imported on first use, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xbml.errors import ConfigError
from xbml.registry import Registry


def test_a_declared_component_is_imported_on_first_get_only():
    code = (
        "import sys\n"
        "from xbml.registry import Registry\n"
        "r = Registry('thing')\n"
        "r.declare('decoder', 'json.decoder:JSONDecoder')\n"
        "sys.modules.pop('json.decoder', None); sys.modules.pop('json', None)\n"
        "assert r.names() == ['decoder'] and 'decoder' in r\n"
        "assert 'json.decoder' not in sys.modules, 'declaring imported the module'\n"
        "import json.decoder\n"
        "assert r.get('decoder') is json.decoder.JSONDecoder\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_names_are_unique_and_unknown_names_list_the_valid_ones():
    r: Registry = Registry("widget")
    r.register("a")(int)
    r.declare("b", "collections:OrderedDict")
    with pytest.raises(ValueError, match="registered twice"):
        r.declare("a", "collections:Counter")
    with pytest.raises(ValueError, match="package.module:Attribute"):
        r.declare("c", "collections.Counter")
    with pytest.raises(ConfigError, match="unknown widget 'z'; valid widgets: a, b"):
        r.get("z")
    assert r.get("a") is int and r.get("b").__name__ == "OrderedDict"
