"""Loading a policy file: YAML -> pydantic, with every problem reported as file:line and field
(``workbench.yamlfile``), all of them at once."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from workbench.errors import WorkbenchUserError
from workbench.policy.model import Policy, cross_reference_problems
from workbench.yamlfile import Problem, YamlFile, YamlSyntaxError, field_name

__all__ = ["PolicyError", "Problem", "load_policy", "parse_policy"]


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


_PATTERN_HELP = {
    "studies": "study ids are 1-30 characters of a-z, 0-9 and '-', starting with a letter "
               "(they name JupyterHub servers)",
    "users": "user names are lowercase letters, digits, '_', '.', '-', starting with a letter",
    "holders": "holder ids are lowercase letters, digits and '-', starting with a letter",
    "key_parties": "holder ids are lowercase letters, digits and '-', starting with a letter",
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
    if error["type"] == "value_error":  # a validator's own sentence
        return error["msg"].removeprefix("Value error, ")
    return error["msg"]


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate a policy given as YAML text; ``source`` names it in error messages."""
    try:
        doc = YamlFile.parse(text)
    except YamlSyntaxError as exc:
        raise PolicyError(source, [exc.problem]) from None
    data = {} if doc.data is None else doc.data
    if not isinstance(data, dict):
        raise PolicyError(source, [Problem(1, "(top level)", "a policy is a mapping with users, "
                                                             "studies and holders")])
    problems = doc.duplicate_keys()
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems += doc.problems(exc, message=_message)
        policy = None
    if policy is not None:
        for loc, message in cross_reference_problems(policy):
            problems.append(Problem(doc.line(loc), field_name(loc), message))
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
