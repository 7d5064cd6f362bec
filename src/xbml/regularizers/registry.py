"""The registry of regularisers: a config block names one, the code finds it.

Registering a class makes its block a valid part of every training config (defaults, domains),
its term part of the objective when its weight is above 0, and its loss, diagnostics and chance
level part of the run log, the summary and the report. Modules outside the package register
theirs on import: name them in XBML_PLUGINS (xbml.plugins) to use them from the CLI.
"""

from __future__ import annotations

from xbml.registry import Registry

REGULARIZERS: Registry = Registry("regularizer")


def registered():
    """Every registered regulariser class, by name (the built-in ones imported first)."""
    import xbml.regularizers.xbm  # noqa: F401  registers on import
    import xbml.regularizers.xml  # noqa: F401

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
