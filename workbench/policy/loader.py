"""Loading a policy file: YAML -> pydantic, with every problem reported as file:line and field.

PyYAML's composed node tree keeps the source position of every key and value; a pydantic error
location (``studies -> cml-tki -> expires``) is walked down that tree to find its line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from workbench.errors import WorkbenchUserError
from workbench.policy.model import Policy, cross_reference_problems


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: field '{self.field}': {self.message}"


class PolicyError(WorkbenchUserError):
    """A policy file that cannot be used; ``problems`` lists each one with its line and field."""

    def __init__(self, path: str, problems: list[Problem]):
        self.path = path
        self.problems = problems
        listing = "\n".join(f"  {path}:{p}" for p in problems)
        super().__init__(
            f"policy file {path} has {len(problems)} problem(s):\n{listing}\n"
            "Fix them and run 'workbench policy check FILE' again.",
            reason="bad-policy",
        )


class _PolicyLoader(yaml.SafeLoader):
    """Safe YAML, but dates stay text so pydantic reports a bad date with its line."""


_PolicyLoader.add_constructor("tag:yaml.org,2002:timestamp",
                              lambda loader, node: loader.construct_scalar(node))


def _duplicate_keys(node, path=()) -> list[Problem]:
    """PyYAML silently keeps the last of two equal keys; in a policy that hides a grant."""
    problems = []
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            if key.value in seen:
                where = ".".join(map(str, path + (key.value,)))
                problems.append(Problem(key.start_mark.line + 1, where, "this key appears twice"))
            seen.add(key.value)
            problems += _duplicate_keys(value, path + (key.value,))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(item, path + (index,))
    return problems


def _line_of(root, loc: tuple) -> int:
    """The 1-based line of the deepest YAML node the location reaches."""
    node = root
    for position, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    # a bad mapping key: pydantic puts "[key]" after it; point at the key itself
                    node = key if loc[position + 1:position + 2] == ("[key]",) else value
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            node = node.value[part]
        else:
            break
    if node is None:
        return 1
    return node.start_mark.line + 1


_PATTERN_HELP = {
    "studies": "study ids are 1-30 characters of a-z, 0-9 and '-', starting with a letter "
               "(they name JupyterHub servers)",
    "users": "user names are lowercase letters, digits, '_', '.', '-', starting with a letter",
    "holders": "holder ids are lowercase letters, digits and '-', starting with a letter",
    "views": "view ids are catalog view ids: lowercase letters, digits and '_'",
    "members": "user names are lowercase letters, digits, '_', '.', '-', starting with a letter",
    "reviewers": "user names are lowercase letters, digits, '_', '.', '-', starting with a letter",
    "memory": "memory is a number with an optional unit K, M, G or T, e.g. '2G'",
}


def _message(error: dict) -> str:
    if error["type"] == "string_pattern_mismatch":
        for part in reversed([p for p in error["loc"] if isinstance(p, str) and p != "[key]"]):
            if part in _PATTERN_HELP:
                return _PATTERN_HELP[part]
        return error["msg"]
    return error["msg"]


def _field(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p != "[key]") or "(top level)"


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate a policy given as YAML text; ``source`` names it in error messages."""
    try:
        root = yaml.compose(text, Loader=_PolicyLoader)
        data = yaml.load(text, Loader=_PolicyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = Problem(line, "(syntax)", f"not valid YAML: {exc.problem}")
        raise PolicyError(source, [problem]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(source, [Problem(1, "(top level)", "a policy is a mapping with users, "
                                                             "studies and holders")])
    problems = _duplicate_keys(root)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            problems.append(Problem(_line_of(root, loc), _field(loc), _message(error)))
        policy = None
    if policy is not None:
        for loc, message in cross_reference_problems(policy):
            problems.append(Problem(_line_of(root, loc), _field(loc), message))
    if problems:
        raise PolicyError(source, sorted(problems, key=lambda p: p.line))
    return policy


def load_policy(path: str | os.PathLike) -> Policy:
    """Read and validate a policy file; raises PolicyError naming the file, line and field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise WorkbenchUserError(f"cannot read policy file {path}: {exc.strerror}",
                                 reason="bad-policy") from None
    return parse_policy(text, str(path))
