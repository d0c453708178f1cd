"""Files the package ships beside its code, and where they are.

They live inside ``workbench/`` and reach a wheel as package data (pyproject.toml), so an
installed workbench finds them the same way as a checkout; tests/test_wheel.py builds the wheel
and fails if one is missing. Paths, not ``importlib.resources`` traversables: bubblewrap binds
the extensions directory into the kernel and JupyterHub is given its configuration file by name,
and both need a file on disk (a wheel installs as one).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# The JupyterHub configuration (three lines of glue) and the demo policy.
HUB_CONFIG_DIR = PACKAGE / "hub_config"
JUPYTERHUB_CONFIG = HUB_CONFIG_DIR / "jupyterhub_config.py"
DEMO_POLICY = HUB_CONFIG_DIR / "policy.yaml"
# Modules put on the import path of study servers and kernels (bound into the sandbox).
EXTENSIONS_DIR = PACKAGE / "extensions"
# The example studies (``workbench run``) and the reviewer and admin dashboards (Voila).
NOTEBOOKS = PACKAGE / "notebooks"
DASHBOARDS = NOTEBOOKS / "dashboards"
