"""The policy's ``secure:`` settings (issue 17): who holds the joint BFV key and how many of
them decrypt together. Validated like the rest of the policy, one line per problem with the
file, line and field; a change is named in the policy-change record."""

from __future__ import annotations

import pytest
from policy_support import POLICY

from workbench.errors import WorkbenchUserError
from workbench.policy import parse_policy
from workbench.policy.changes import describe_changes
from workbench.policy.loader import PolicyError


def test_the_default_is_every_registered_holder_and_all_of_them():
    secure = parse_policy(POLICY).secure
    assert secure.decryption_threshold == "all" and secure.key_parties is None
    assert secure.key_set(["c", "a", "b"]) == (["a", "b", "c"], 3)
    two = parse_policy(POLICY + "secure:\n  decryption_threshold: 2\n").secure
    assert two.key_set(["a", "b", "c"]) == (["a", "b", "c"], 2)
    named = parse_policy(POLICY + "secure:\n  key_parties: [b, a]\n").secure
    assert named.key_set(["a", "b", "c"]) == (["a", "b"], 2)


@pytest.mark.parametrize(("setting", "field", "says"), [
    ("decryption_threshold: 1", "secure.decryption_threshold", "from 2 to 32, or 'all'"),
    ("decryption_threshold: 33", "secure.decryption_threshold", "from 2 to 32, or 'all'"),
    ("decryption_threshold: most", "secure.decryption_threshold", "from 2 to 32, or 'all'"),
    ("decryption_threshold: true", "secure.decryption_threshold", "from 2 to 32, or 'all'"),
    ("{decryption_threshold: 3, key_parties: [a, b]}", "secure.decryption_threshold",
     "3 is more than the 2 key_parties"),
    ("key_parties: [a]", "secure.key_parties", "at least 2"),
    ("key_parties: [a, a]", "secure.key_parties", "listed twice"),
    ("key_parties: [A, b, c]", "secure.key_parties.0", "holder ids are lowercase"),
    ("threshold: 2", "secure.threshold", "Extra inputs"),
])
def test_bad_settings_name_the_file_line_and_field(setting, field, says):
    text = POLICY + (f"secure: {setting}\n" if setting.startswith("{")
                     else f"secure:\n  {setting}\n")
    with pytest.raises(PolicyError) as bad:
        parse_policy(text, "policy.yaml")
    problems = bad.value.problems
    assert len(problems) == 1, problems
    line = len(POLICY.splitlines()) + (1 if setting.startswith("{") else 2)
    assert str(problems[0]).startswith(f"line {line}: field '{field}'"), str(problems[0])
    assert says in str(problems[0])


def test_more_key_parties_named_than_registered_or_t_above_them_is_one_line():
    named = parse_policy(POLICY + "secure:\n  key_parties: [a, z]\n").secure
    with pytest.raises(WorkbenchUserError) as bad:
        named.key_set(["a", "b"])
    assert bad.value.reason == "threshold-policy" and "names z" in str(bad.value)
    four = parse_policy(POLICY + "secure:\n  decryption_threshold: 4\n").secure
    with pytest.raises(WorkbenchUserError) as bad:
        four.key_set(["a", "b", "c"])
    assert "4, more than the 3 key parties" in str(bad.value) and "\n" not in str(bad.value)


def test_a_change_of_t_is_named_in_the_policy_change_record():
    old = parse_policy(POLICY)
    new = parse_policy(POLICY + "secure:\n  decryption_threshold: 2\n")
    assert "secure.decryption_threshold" in describe_changes(old, new)["changes"]
    assert not [c for c in describe_changes(old, old)["changes"] if c.startswith("secure")]
