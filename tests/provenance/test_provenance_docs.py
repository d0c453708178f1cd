"""docs/provenance.md keeps up with the code: every record kind, required field and command."""

from __future__ import annotations

from pathlib import Path

from workbench.provenance import records
from workbench.provenance.cli import commands

DOC = (Path(__file__).parents[2] / "docs" / "provenance.md").read_text()


def test_every_record_kind_and_its_required_fields_are_documented():
    for kind, (_version, schema) in records.schemas().items():
        row = next((line for line in DOC.splitlines() if line.startswith(f"| `{kind}` |")), None)
        assert row is not None, f"{kind} missing from the kinds table"
        for name in schema["required"]:
            assert name in row, f"{kind}: required field {name} not documented"


def test_every_command_is_documented():
    def walk(command, prefix):
        yield f"{prefix} {command.name}".strip()
        for sub in getattr(command, "commands", {}).values():
            yield from walk(sub, f"{prefix} {command.name}".strip())

    for command in commands:
        for name in walk(command, "workbench"):
            assert name in DOC, f"'{name}' is not documented"
