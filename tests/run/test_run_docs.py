"""The admin guide's policy reference is generated from the schema and cannot drift from it; a
schema field that is missing from the guide fails here."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.run.admin_docs import GUIDE, SCHEMA, policy_reference, render_guide

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_admin_guide_policy_reference_is_up_to_date():
    schema = json.loads((DOCS / SCHEMA).read_text())
    assert (DOCS / GUIDE).read_text() == render_guide((DOCS / GUIDE).read_text(), schema), (
        "run: python -m workbench.run.admin_docs")


def test_every_schema_field_appears_in_the_reference():
    schema = json.loads((DOCS / SCHEMA).read_text())
    reference = policy_reference(schema)
    objects = [schema, *schema["$defs"].values()]
    for obj in objects:
        for name in obj.get("properties", {}):
            assert f"| `{name}` |" in reference, name
    changed = json.loads((DOCS / SCHEMA).read_text())
    changed["$defs"]["Study"]["properties"]["new_knob"] = {"type": "integer", "default": 3}
    assert "| `new_knob` | integer | no | `3` |" in policy_reference(changed)
