"""Through the real gateway process and socket, as the study's kernel uid."""

from __future__ import annotations

import json

import pytest

STUDY, OTHER, EXPIRED, ROWS = "gw-one", "gw-two", "gw-old", 300  # as in conftest.py


def test_granted_view_is_returned(gateway):
    out = gateway.run_as(STUDY, """
        frame = wb.view("visits")
        print(json.dumps({"rows": len(frame), "columns": list(frame.columns),
                          "views": sorted(wb.views()["id"])}))
    """)
    assert out["rows"] == ROWS
    assert out["columns"] == ["person_id", "visit_date", "age", "diagnosis", "holder"]
    assert out["views"] == ["elderly", "visits", "visits_monthly"]
