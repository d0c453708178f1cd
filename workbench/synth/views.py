"""The views over the synthetic common model (``views.yaml``), as catalog ``View`` records."""

from __future__ import annotations

from pathlib import Path

import yaml

from workbench.catalog.models import View

VIEWS_FILE = Path(__file__).parent / "views.yaml"


def synthetic_views() -> list[View]:
    """Every view in views.yaml, validated (the space builder loads the file with line numbers)."""
    return [View.model_validate(item) for item in yaml.safe_load(VIEWS_FILE.read_text())]
