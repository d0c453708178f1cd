"""Record kinds: each versioned schema accepts its valid example and refuses the invalid ones with
a message naming the field and never the value."""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from workbench.provenance import records

H = "0123456789abcdef" * 4
TS = "2026-11-25T13:00:00.123Z"

VALID = {
    "cell-execution": {"study": "cml-tki", "user": "alice", "kernel_id": "k-1", "session": "s-1",
                       "msg_id": "m-1", "cell_id": "c-1", "notebook_path": "analysis.ipynb",
                       "code": "wb.view('cohort')", "code_sha256": H, "started": TS, "ended": TS,
                       "status": "ok", "execution_count": 3,
                       "outputs": [{"sha256": H, "size": 120, "mime": "text/plain"}]},
    "view-read": {"study": "cml-tki", "user": "alice", "kernel_id": "k-1", "msg_id": "m-1",
                  "view": "cml_cohort", "view_version": "3", "columns": ["age_band", "tki"],
                  "rows": 1200, "result_sha256": H, "result_size": 4096, "format": "arrow"},
    "he-operation": {"study": "cml-tki", "op": "kaplan_meier", "view": "cml_cohort",
                     "holders": ["hospital_a", "insurer_b"], "scheme": "bfv",
                     "params": {"poly_modulus_degree": 8192, "plain_modulus": 1032193,
                                "coeff_mod_bit_sizes": [60, 40, 60]}, "ciphertexts": 4,
                     "request_id": "req-1"},
    "he-decryption": {"study": "cml-tki", "request_id": "req-1", "decision": "refused",
                      "rules": [{"name": "min-count", "status": "fail", "rule": "n>=10"}],
                      "reason": "small-cell", "cells": 40},
    "release-request": {"study": "cml-tki", "user": "alice", "request_id": "rel-1",
                        "files": [{"name": "km.png", "sha256": H, "size": 20480}],
                        "output_kind": "figure", "checks": [{"name": "min-count",
                                                             "status": "pass"}]},
    "release-decision": {"study": "cml-tki", "request_id": "rel-1", "reviewer": "carol",
                         "decision": "approved", "stage": "first-review"},
    "release-comment": {"study": "cml-tki", "request_id": "rel-1", "user": "rita",
                        "role": "reviewer", "ref": H},
    "review-view": {"study": "cml-tki", "user": "rita", "kernel_id": "k-2", "msg_id": "m-1",
                    "code_sha256": H, "status": "ok", "started": "2026-11-25T13:00:00Z"},
    "file-access": {"study": "cml-tki", "user": "alice", "path": "analysis.ipynb",
                    "route": "contents", "method": "get", "type": "notebook",
                    "format": "json", "status": "ok", "size": 2048, "sha256": H},
    "policy-change": {"actor": "admin", "policy_sha256": H, "previous_sha256": H,
                      "policy_path": "hub_config/policy.yaml", "changes": ["study cml-tki added"]},
    "kernel-lifecycle": {"study": "cml-tki", "kernel_id": "k-1", "event": "start",
                         "user": "alice", "uid": 1005, "sandbox": "bwrap",
                         "seccomp_sha256": H},
    "server-spawn": {"study": "cml-tki", "user": "alice", "event": "spawn",
                     "server_name": "cml-tki", "resources": {"mem_limit": "2G", "cpu_limit": 1}},
    "login": {"user": "alice", "event": "failed", "authenticator": "native",
              "remote_addr": "127.0.0.1"},
}

# (kind, change, field named in the error)
INVALID = [
    ("cell-execution", {"code_sha256": None}, "code_sha256"),          # removed: required
    ("cell-execution", {"code_sha256": "XYZ"}, "code_sha256"),         # not a sha256
    ("cell-execution", {"outputs": [{"sha256": H}]}, "size"),          # output without its size
    ("cell-execution", {"outputs": [{"sha256": H, "size": 1, "text": "42 patients"}]}, "text"),
    ("cell-execution", {"started": "yesterday"}, "started"),
    ("cell-execution", {"status": "maybe"}, "status"),
    ("view-read", {"rows": -1}, "rows"),
    ("view-read", {"rows": "many"}, "rows"),
    ("view-read", {"study": "Not A Slug"}, "study"),
    ("view-read", {"values": [1, 2]}, "values"),                       # unknown field
    ("he-operation", {"op": None}, "op"),
    ("he-operation", {"params": {"secret key": "x"}}, "params"),
    ("he-decryption", {"decision": "maybe"}, "decision"),
    ("release-request", {"files": []}, "files"),
    ("release-decision", {"reviewer": None}, "reviewer"),
    ("policy-change", {"policy_sha256": "abc"}, "policy_sha256"),
    ("kernel-lifecycle", {"event": "exploded"}, "event"),
    ("server-spawn", {"uid": -5}, "uid"),
    ("login", {"remote_addr": "evil.example.org"}, "remote_addr"),
    ("login", {"user": ""}, "user"),
    ("file-access", {"status": "downloaded"}, "status"),
    ("file-access", {"content": "42 patients"}, "content"),           # unknown field
]


def test_every_kind_has_a_versioned_schema_and_an_example():
    assert set(records.kinds()) == set(VALID)
    for kind, (version, schema) in records.schemas().items():
        assert version >= 1 and schema["title"] == kind and schema["additionalProperties"] is False


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_examples_are_accepted(kind):
    assert records.validate(kind, VALID[kind]) == records.schemas()[kind][0]  # the newest


@pytest.mark.parametrize(("kind", "change", "field"), INVALID,
                         ids=[f"{k}-{f}" for k, _, f in INVALID])
def test_invalid_examples_are_refused_naming_the_field(kind, change, field):
    fields = dict(VALID[kind])
    for name, value in change.items():
        if value is None:
            fields.pop(name)
        else:
            fields[name] = value
    with pytest.raises(records.RecordRefused) as caught:
        records.validate(kind, fields)
    message = str(caught.value)
    assert field in message and kind in message
    assert caught.value.reason == "record-refused"


def test_unknown_kind_and_non_object_fields_are_refused():
    with pytest.raises(records.RecordRefused, match="unknown record kind 'cell-exec'"):
        records.validate("cell-exec", {})
    with pytest.raises(records.RecordRefused, match="unknown record kind"):
        records.validate(None, {})
    with pytest.raises(records.RecordRefused, match="must be of type object"):
        records.validate("login", ["alice"])


SECRET = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=12, max_size=20)


@settings(max_examples=80, deadline=None)
@given(kind=st.sampled_from(sorted(VALID)), value=SECRET,
       slot=st.sampled_from(["study", "user", "rows", "status", "reason", "ref", "uid"]))
def test_refusals_never_echo_a_value(kind, value, slot):
    """A patient value put in a field of the wrong shape must not come back in the error."""
    fields = {**VALID[kind], slot: value, "extra_" + "x": value}
    with pytest.raises(records.RecordRefused) as caught:
        records.validate(kind, fields)
    assert value not in str(caught.value)


def test_canonical_json_is_stable_and_refuses_nan():
    assert records.canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    with pytest.raises(ValueError):
        records.canonical({"x": float("nan")})


def test_control_characters_are_refused_outside_the_code():
    with pytest.raises(records.RecordRefused, match="'user' contains a control character"):
        records.validate("login", {"user": "alice\n", "event": "login"})
    with pytest.raises(records.RecordRefused, match="'outputs/0/name' contains a control"):
        records.validate("cell-execution", {**VALID["cell-execution"], "outputs": [
            {"sha256": H, "size": 1, "name": "a\x1bb"}]})
    assert records.validate("cell-execution", {**VALID["cell-execution"], "code": "a\n\tb"}) == 1


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(allow_nan=False)
                    | st.text(max_size=70) | st.just(H) | st.just(TS),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["sha256", "size", "name", "status", "x"]),
                                      inner, max_size=4), max_leaves=8)
# values that are valid somewhere, and edge cases of the patterns and bounds
SHAPED = st.sampled_from([value for example in VALID.values() for value in example.values()]
                         + ["", "a" * 201, "A", "a-b", "a_b", "-a", "1", 0, -1, 1.0, True,
                            H.upper(), H[:-1], TS[:-1], "2026-11-25T13:00:00+01:00", [], {},
                            [{"sha256": H, "size": 1.0}], {"k": [1, "x"]}, "127.0.0.1",
                            "::1", "a" * 129, "x/y", "x y"])


@settings(max_examples=600, deadline=None)
@given(kind=st.sampled_from(sorted(VALID)), data=st.data())
def test_the_fast_validator_accepts_nothing_jsonschema_refuses(kind, data):
    """The collector's hot path uses the compiled validator; jsonschema is the reference."""
    fields = dict(VALID[kind])
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(sorted(records.schemas()[kind][1]["properties"])
                                         + ["extra"]))
        if data.draw(st.booleans()) and name in fields:
            del fields[name]
        else:
            fields[name] = data.draw(SHAPED | JSON)
    try:
        records._fast_validator(kind)(fields)
    except records.fastjsonschema.JsonSchemaException:
        event("refused by the fast path")
        return
    event("accepted by the fast path")
    assert records._validator(kind).is_valid(fields), fields
