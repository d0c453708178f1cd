"""Record kinds: versioned JSON schemas (``schemas/<kind>.v<N>.json``) and their validation.

A writer sends ``(kind, fields)``; the collector validates ``fields`` against the newest schema of
that kind and refuses anything else. Error messages name the field and the rule it broke, never the
value (a value might be patient-level).
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources

import fastjsonschema
import jsonschema

from workbench.errors import WorkbenchUserError

_SCHEMA_FILE = re.compile(r"^(?P<kind>[a-z][a-z-]*)\.v(?P<version>[0-9]+)\.json$")


class RecordRefused(WorkbenchUserError):
    """A record the collector will not store: unknown kind or fields that break its schema."""

    def __init__(self, message: str):
        super().__init__(message, reason="record-refused")


@cache
def schemas() -> dict[str, tuple[int, dict]]:
    """{kind: (newest version, schema)} for every schema file shipped with the package."""
    found: dict[str, tuple[int, dict]] = {}
    for entry in resources.files("workbench.provenance").joinpath("schemas").iterdir():
        match = _SCHEMA_FILE.match(entry.name)
        if not match:
            continue
        version = int(match["version"])
        if match["kind"] not in found or found[match["kind"]][0] < version:
            found[match["kind"]] = (version, json.loads(entry.read_text()))
    return found


def kinds() -> list[str]:
    return sorted(schemas())


@cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    schema = schemas()[kind][1]
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _field(path) -> str:
    return "/".join(str(part) for part in path) or "(record)"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line naming the field and the rule, built from the schema side only (no values)."""
    where = _field(error.absolute_path)
    rule, expected = error.validator, error.validator_value
    if rule == "required":
        missing = [name for name in expected if name not in (error.instance or {})]
        inside = f" in {where!r}" if error.absolute_path else ""
        return f"missing required field {', '.join(repr(name[:64]) for name in missing)}{inside}"
    if rule == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(str(name)[:64] for name in error.instance if name not in allowed)
        inside = f" in {where!r}" if error.absolute_path else ""
        return f"unknown field(s) {', '.join(map(repr, extra))}{inside} (not in the schema)"
    if rule == "type":
        return f"field {where!r} must be of type {expected}"
    if rule == "enum":
        return f"field {where!r} must be one of {', '.join(map(str, expected))}"
    if rule == "pattern":
        return f"field {where!r} does not match the pattern {expected}"
    if rule in ("maxLength", "minLength", "maxItems", "minItems", "minimum", "maximum",
                "maxProperties"):
        return f"field {where!r} breaks {rule} {expected}"
    return f"field {where!r} breaks the schema rule {rule!r}"


@cache
def _fast_validator(kind: str):
    """The same schema compiled to Python code (fastjsonschema): ~40x faster than jsonschema on
    the collector's hot path. jsonschema stays the reference: it checks the schemas, explains
    refusals, and a property test shows that nothing this one accepts is refused by jsonschema."""
    _validator(kind)  # the schema itself is checked by jsonschema first
    return fastjsonschema.compile(schemas()[kind][1])


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MULTILINE_FIELDS = {"code"}  # a cell's source has newlines; nothing else may


def _control_characters(value: object, path: str = "") -> str | None:
    """Regex '$' also matches before a final newline in Python, so the schemas' patterns alone
    would let 'alice\\n' through: refuse control characters in every string but the code."""
    if isinstance(value, str):
        return path if _CONTROL.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if not path and key in _MULTILINE_FIELDS:
                continue
            found = _control_characters(item, f"{path}/{key}" if path else str(key))
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _control_characters(item, f"{path}/{index}")
            if found:
                return found
    return None


def validate(kind: str, fields: object) -> int:
    """Check ``fields`` against the newest schema of ``kind``; return that schema's version.

    Raises RecordRefused naming the first bad field (in a stable order).
    """
    if not isinstance(kind, str) or kind not in schemas():
        shown = kind[:64] if isinstance(kind, str) else type(kind).__name__
        raise RecordRefused(
            f"unknown record kind {shown!r}: the collector accepts {', '.join(kinds())}")
    try:
        _fast_validator(kind)(fields)
        valid = True
    except fastjsonschema.JsonSchemaException:
        valid = False
    bad = _control_characters(fields)
    if bad:
        raise RecordRefused(f"{kind} record refused: field {bad!r} contains a control character")
    if valid:
        return schemas()[kind][0]
    errors = sorted(_validator(kind).iter_errors(fields),
                    key=lambda e: (_field(e.absolute_path), str(e.validator)))
    if not errors:  # the two validators disagree: refuse, the safe side
        raise RecordRefused(f"{kind} record refused: it does not match the schema")
    raise RecordRefused(f"{kind} record refused: {_describe(errors[0])}"
                        + (f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""))


def canonical(obj: object) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8, no NaN. Hashes are taken over these bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")
