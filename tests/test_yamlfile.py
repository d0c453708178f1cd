"""The one loader for YAML written by people (workbench.yamlfile): syntax errors and model errors
both name a line and a field; the policy, view-file and mapping loaders all use it (their own
tests check their messages)."""

from __future__ import annotations

import textwrap

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from workbench.errors import WorkbenchUserError
from workbench.yamlfile import Problem, YamlFile, YamlSyntaxError

TEXT = textwrap.dedent("""\
    name: trial
    started: 2030-01-01
    arms:
      - label: a
        size: 10
      - label: b
        size: ten
    owner:
      team: x
    """)


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    size: int


class Owner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    team: str
    email: str


class Trial(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    started: str  # dates stay text
    arms: list[Arm]
    owner: Owner


def _problems(text: str) -> list[Problem]:
    doc = YamlFile.parse(text)
    with pytest.raises(ValidationError) as info:
        Trial.model_validate(doc.data)
    return doc.problems(info.value)


def test_model_errors_name_the_line_where_the_field_is_written():
    found = {(p.line, p.field) for p in _problems(TEXT)}
    # a bad value: its key's line; a missing field: where the mapping lacking it starts
    assert found == {(7, "arms.1.size"), (9, "owner.email")}


def test_an_unknown_key_and_a_bad_item_name_their_own_lines():
    text = TEXT.replace("size: 10", "size: 10\n    colour: red").replace("ten", "10")
    text = text.replace("  team: x\n", "  team: x\n  email: e\n")
    assert [(p.line, p.field) for p in _problems(text)] == [(6, "arms.0.colour")]


def test_syntax_errors_name_their_line():
    with pytest.raises(YamlSyntaxError) as info:
        YamlFile.parse(TEXT.replace("label: b", "label: [b"))
    assert info.value.problem.field == "(syntax)" and info.value.problem.line >= 6
    assert info.value.problem.message.startswith("not valid YAML")


def test_dates_stay_text_and_an_empty_document_is_none():
    assert YamlFile.parse(TEXT).data["started"] == "2030-01-01"
    empty = YamlFile.parse("# nothing\n")
    assert empty.data is None and empty.line(("a", "b")) == 1


def test_a_key_given_twice_is_found():
    doc = YamlFile.parse(TEXT + "name: again\n")
    assert doc.duplicate_keys() == [Problem(10, "name", "this key appears twice")]


def test_view_files_and_mappings_refuse_a_key_given_twice(tmp_path):
    """PyYAML keeps the last of two keys: a second ``sql:`` or column rule would win silently."""
    from workbench.catalog.view_files import load_view_file
    from workbench.harmonise import load_mapping

    views = tmp_path / "views.yaml"
    views.write_text("- id: a\n  sql: SELECT 1\n  sql: SELECT 2\n")
    with pytest.raises(WorkbenchUserError, match="line 3: field '0.sql': this key appears twice"):
        load_view_file(views)
    mapping = tmp_path / "m.yaml"
    mapping.write_text("source: s\ndescription: d\ntables:\n  person:\n    - from: p\n"
                       "      columns:\n        gender: sex\n        gender: other\n")
    with pytest.raises(WorkbenchUserError, match="line 8, field 'tables.person.0.columns.gender'"):
        load_mapping(mapping)
