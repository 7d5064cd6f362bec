"""xbml: reproducible deep metric learning with the cross-batch (XML) regulariser.

Importing the package is cheap on purpose: torch is only imported by the
modules that need it, so `python -m xbml evaluate` stays small in memory.
"""

__version__ = "0.1.0"
