"""YAML written by people (policies, view files, source mappings): every mistake with its line
and field, whether YAML cannot parse it or the pydantic model refuses it.

PyYAML's node tree keeps where each key and item was written; a pydantic error location
(``studies -> s1 -> expires``) is walked down that tree to the line where the field is written
(or, for a missing field, where the mapping that lacks it starts).

    doc = YamlFile.parse(text)            # raises YamlSyntaxError(problem) with the line
    problems = doc.duplicate_keys()       # PyYAML would silently keep the last of two keys
    try:
        Model.model_validate(doc.data)
    except ValidationError as exc:
        problems += doc.problems(exc)     # [Problem(line, field, message), ...]

Dates stay text, so a bad date is the model's error, with its line, not a YAML one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

KEY = "[key]"  # pydantic's marker after a mapping key that failed its own validation


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: field '{self.field}': {self.message}"


class YamlSyntaxError(ValueError):
    """Text that is not YAML; ``problem`` has its line."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


class _Loader(yaml.SafeLoader):
    """Safe YAML, but dates stay text."""


_Loader.add_constructor("tag:yaml.org,2002:timestamp",
                        lambda loader, node: loader.construct_scalar(node))


def field_name(loc: tuple) -> str:
    """``studies.s1.expires`` for a pydantic location."""
    return ".".join(str(part) for part in loc if part != KEY) or "(top level)"


class YamlFile:
    """One parsed YAML document: its data and the node tree that says where things are."""

    def __init__(self, root: yaml.Node | None, data: Any):
        self.root, self.data = root, data

    @classmethod
    def parse(cls, text: str) -> YamlFile:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise YamlSyntaxError(Problem(mark.line + 1 if mark else 1, "(syntax)",
                                          f"not valid YAML: {exc.problem}")) from None
        except yaml.YAMLError as exc:
            raise YamlSyntaxError(Problem(1, "(syntax)", f"not valid YAML: {exc}")) from None
        finally:
            loader.dispose()
        return cls(root, data)

    def line(self, loc: tuple, node: yaml.Node | None = None) -> int:
        """The 1-based line where the field at ``loc`` (keys and list indexes, from ``node``,
        default the document) is written; for a missing field, where its mapping starts."""
        node = node if node is not None else self.root
        if node is None:
            return 1
        mark = node.start_mark
        for part in loc:
            if part == KEY:
                break  # the key itself: its line is already the mark
            if isinstance(node, yaml.MappingNode):
                found = next(((k, v) for k, v in node.value if k.value == str(part)), None)
                if found is None:
                    mark = node.start_mark
                    break
                key, node = found
                mark = key.start_mark
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                    and part < len(node.value):
                node = node.value[part]
                mark = node.start_mark
            else:
                break
        return mark.line + 1

    def problems(self, exc: ValidationError, node: yaml.Node | None = None,
                 message: Callable[[dict], str] = lambda error: error["msg"]) -> list[Problem]:
        """Each of the model's errors with its line and field (locations relative to ``node``,
        default the document); ``message`` words an error (default: pydantic's)."""
        return [Problem(self.line(tuple(error["loc"]), node), field_name(tuple(error["loc"])),
                        message(error))
                for error in exc.errors()]

    def duplicate_keys(self) -> list[Problem]:
        """Keys given twice in one mapping: PyYAML silently keeps the last, which in a policy
        would hide a grant and in a mapping a column rule."""
        problems: list[Problem] = []

        def walk(node, path: tuple) -> None:
            if isinstance(node, yaml.MappingNode):
                seen = set()
                for key, value in node.value:
                    if key.value in seen:
                        problems.append(Problem(key.start_mark.line + 1,
                                                field_name(path + (key.value,)),
                                                "this key appears twice"))
                    seen.add(key.value)
                    walk(value, path + (key.value,))
            elif isinstance(node, yaml.SequenceNode):
                for index, item in enumerate(node.value):
                    walk(item, path + (index,))

        walk(self.root, ())
        return problems
