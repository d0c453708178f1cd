"""Policy files: valid ones load, every malformed one is reported with file, line and field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest

from workbench.policy import PolicyError, load_policy, parse_policy
from workbench.policy.cli import policy_schema
from workbench.yamlfile import YamlFile

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "workbench" / "hub_config" / "policy.yaml"

GOOD = textwrap.dedent("""\
    users:
      alice: {roles: [researcher]}
      rita: {roles: [reviewer]}
      ada: {roles: [admin]}
    studies:
      s1:
        title: T
        purpose: P
        sponsor: S
        members: [alice]
        reviewers: [rita]
        views: [v1]
        expires: 2030-01-01
    """)


def problems_of(text: str) -> list:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "test.yaml")
    assert info.value.reason == "bad-policy"
    return info.value.problems


def test_demo_policy_is_valid_and_has_the_demo_studies():
    policy = load_policy(DEMO)
    assert set(policy.studies) >= {"cml-tki", "lung-validation"}
    for study in ("cml-tki", "lung-validation"):
        assert "alice" in policy.studies[study].members
        assert set(policy.studies[study].reviewers) == {"rita", "remy"}
    assert policy.admins() == ["ada"]


def test_defaults_apply():
    study = parse_policy(GOOD).studies["s1"]
    assert study.thresholds.min_cell_count == 10
    assert (study.thresholds.dominance.n, study.thresholds.dominance.k) == (2, 0.9)
    assert study.resources.memory_bytes == 2 * 2**30


@pytest.mark.parametrize("old,new,line,field", [
    ("expires: 2030-01-01", "expires: 2030-13-01", 13, "studies.s1.expires"),
    ("  s1:\n", "  S_1:\n", 6, "studies.S_1"),
    ("  s1:\n", "  s" + "x" * 30 + ":\n", 6, "studies.s" + "x" * 30),
    ("views: [v1]", "views: [V-1]", 12, "studies.s1.views.0"),
    ("rita: {roles: [reviewer]}", "rita: {roles: [boss]}", 3, "users.rita.roles.0"),
    ("    sponsor: S\n", "", 7, "studies.s1.sponsor"),
    ("expires: 2030-01-01", "expires: 2030-01-01\n    colour: red", 14, "studies.s1.colour"),
    ("members: [alice]", "members: [bob]", 10, "studies.s1.members.0"),
    ("members: [alice]", "members: [rita]", 10, "studies.s1.members.0"),
    ("reviewers: [rita]", "reviewers: [alice]", 11, "studies.s1.reviewers.0"),
])
def test_each_problem_names_line_and_field(old, new, line, field):
    text = GOOD.replace(old, new)
    assert text != GOOD
    found = problems_of(text)
    assert (line, field) in [(p.line, p.field) for p in found], found


def test_thresholds_and_resources_are_checked():
    text = GOOD + "    thresholds: {min_cell_count: 0, dominance: {n: 0, k: 1.5}}\n" \
                  "    resources: {cpu: 0, memory: lots, max_kernels: 0}\n"
    fields = {p.field for p in problems_of(text)}
    assert {"studies.s1.thresholds.min_cell_count", "studies.s1.thresholds.dominance.n",
            "studies.s1.thresholds.dominance.k", "studies.s1.resources.cpu",
            "studies.s1.resources.memory", "studies.s1.resources.max_kernels"} <= fields


def test_all_problems_are_listed_not_just_the_first():
    text = GOOD.replace("2030-01-01", "soon").replace("[v1]", "[BAD]")
    assert len(problems_of(text)) == 2


def test_yaml_syntax_error_names_the_line():
    found = problems_of(GOOD.replace("members: [alice]", "members: [alice"))
    assert found[0].field == "(syntax)" and found[0].line >= 10


def test_duplicate_keys_are_refused():
    # PyYAML keeps the last duplicate silently; that would hide a grant or a member.
    text = GOOD + "      s1:\n        title: again\n"
    text = GOOD.replace("studies:\n", "studies:\n  s1: {title: shadow}\n")
    assert any(p.message == "this key appears twice" for p in problems_of(text))


def test_top_level_must_be_a_mapping():
    assert problems_of("- a\n- b\n")[0].line == 1


def test_error_message_names_the_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD.replace("2030-01-01", "never"))
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert f"{path}:line 13: field 'studies.s1.expires'" in str(info.value)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(Exception) as info:
        load_policy(tmp_path / "nope.yaml")
    assert getattr(info.value, "reason", None) == "bad-policy"


def test_published_schema_is_up_to_date():
    published = json.loads((ROOT / "docs" / "policy.schema.json").read_text())
    # regenerate with: workbench policy schema > docs/policy.schema.json
    assert published == policy_schema()


def test_schema_accepts_the_demo_and_rejects_a_bad_study_id():
    schema = policy_schema()
    data = YamlFile.parse(DEMO.read_text()).data  # dates stay text, as in JSON
    jsonschema.validate(data, schema)
    data["studies"]["Bad_Id"] = data["studies"]["cml-tki"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)
