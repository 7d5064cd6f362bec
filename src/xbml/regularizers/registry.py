"""The registry of regularisers: a config block names one, the code finds it.

Registering a class makes its block a valid part of every training config (defaults, domains),
its term part of the objective when its weight is above 0, and its loss, diagnostics and chance
level part of the run log, the summary and the report.

Plugins: a module outside the package lists its regularisers in a module attribute
`xbml_regularizers = [MyRegularizer, ...]`; naming the module in the environment variable
XBML_PLUGINS (comma-separated, importable from PYTHONPATH) registers them in every xbml process,
so `python -m xbml train --set my.weight=0.1` and the workflow's jobs find them.
"""

from __future__ import annotations

import importlib
import os

from xbml.errors import ConfigError
from xbml.registry import Registry

REGULARIZERS: Registry = Registry("regularizer")
PLUGINS_VARIABLE = "XBML_PLUGINS"
_loaded: set[str] = set()


def load_plugins() -> None:
    """Register the regularisers of every module named in XBML_PLUGINS (once per process)."""
    for module in (m.strip() for m in os.environ.get(PLUGINS_VARIABLE, "").split(",")):
        if not module or module in _loaded:
            continue
        try:
            imported = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001  any failure of a user's module is a message, not a traceback
            raise ConfigError(f"{PLUGINS_VARIABLE} names the module {module!r}, which cannot be imported "
                              f"({type(exc).__name__}: {exc}); put its folder on PYTHONPATH or remove it from "
                              f"{PLUGINS_VARIABLE}") from None
        found = getattr(imported, "xbml_regularizers", None)
        if not found:
            raise ConfigError(f"{PLUGINS_VARIABLE} names the module {module!r}, which lists no regularisers; give it "
                              "a module attribute xbml_regularizers = [YourRegularizer, ...]")
        for cls in found:
            if cls.name not in REGULARIZERS:
                REGULARIZERS.register(cls.name)(cls)
        _loaded.add(module)


def blocks() -> list:
    """What the config knows of every regulariser (xbml.regularizers.block), by name: the built-in
    blocks without importing torch, and each plugin's class (its module imports what it needs)."""
    from xbml.regularizers.xbm_block import XbmBlock
    from xbml.regularizers.xml_block import XmlBlock

    load_plugins()
    found = {**{name: REGULARIZERS.get(name) for name in REGULARIZERS.names()}, "xbm": XbmBlock, "xml": XmlBlock}
    return [found[name] for name in sorted(found)]


def registered():
    """Every registered regulariser class, by name (the built-in ones and the plugins)."""
    import xbml.regularizers.xbm  # noqa: F401  registers on import
    import xbml.regularizers.xml  # noqa: F401

    load_plugins()
    return [REGULARIZERS.get(name) for name in REGULARIZERS.names()]


def build_regularizers(context) -> dict:
    """name -> built regulariser, for every registered one the config activates, in name order
    (each with its own generator: the order changes no number)."""
    out = {}
    for cls in registered():
        block = context.cfg[cls.name]
        if cls.active(block):
            out[cls.name] = cls.build(block, context)
    return out
