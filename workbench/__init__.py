"""workbench: secure research workbench for a healthcare trusted data space.

In a study kernel: ``import workbench as wb`` then ``wb.views()``, ``wb.view(name)``,
``wb.describe(name)``, ``wb.catalog()``, ``wb.secure.kaplan_meier(...)`` and
``wb.release.request(...)``.
Attributes are imported lazily so the command-line tools do not pay for the notebook client.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_CLIENT_FUNCTIONS = {"views", "view", "describe", "catalog"}
_SUBMODULES = {"secure", "release"}


def __getattr__(name: str):
    if name in _CLIENT_FUNCTIONS:
        return getattr(importlib.import_module("workbench.client"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"workbench.{name}")
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
