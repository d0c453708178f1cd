"""Property: breaking ANY single value of the demo policy is reported at that value's line, under
that value's field path (Hypothesis picks the value)."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.policy import PolicyError, parse_policy
from workbench.resources import DEMO_POLICY

DEMO = DEMO_POLICY.read_text()


def leaves(node, path=()):
    """(path, scalar node) for every scalar value in the YAML document."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from leaves(value, path + (key.value,))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from leaves(item, path + (index,))
    else:
        yield path, node


# folded multi-line texts (purpose) are left out: they cannot be replaced within one line
LEAVES = [(path, node) for path, node in leaves(yaml.compose(DEMO))
          if node.start_mark.line == node.end_mark.line]


@settings(max_examples=len(LEAVES), deadline=None)
@given(choice=st.sampled_from(LEAVES),
       replacement=st.sampled_from(["{bad: [1]}", "[[1], {x: 2}]"]))
def test_any_broken_value_is_reported_at_its_line_and_field(choice, replacement):
    path, node = choice
    lines = DEMO.splitlines(keepends=True)
    start, end = node.start_mark, node.end_mark
    line = lines[start.line]
    lines[start.line] = line[:start.column] + replacement + line[end.column:]
    with pytest.raises(PolicyError) as info:
        parse_policy("".join(lines), "demo.yaml")
    field = ".".join(str(p) for p in path)
    found = [(p.line, p.field) for p in info.value.problems]
    assert any(f == field or f.startswith(field + ".") for _, f in found), found
    assert any(ln == start.line + 1 for ln, f in found if f.startswith(field)), found
