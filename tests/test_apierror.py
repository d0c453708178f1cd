"""One error shape for the workbench's HTTP services (workbench.apierror): the gateway and the
airlock answer with the same function and publish the same schema (their fuzz tests check every
answer against it)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from workbench import apierror
from workbench.gateway import app as gateway_app
from workbench.gateway.openapi import SPEC as GATEWAY_SPEC
from workbench.release import server as airlock_server
from workbench.release.openapi import SPEC as AIRLOCK_SPEC


def test_both_services_use_the_one_error_shape():
    assert gateway_app.error_response is apierror.error_response
    assert airlock_server.error_response is apierror.error_response
    for spec in (GATEWAY_SPEC, AIRLOCK_SPEC):
        assert spec["components"]["schemas"]["Error"] is apierror.SCHEMA
        errors = [answer for path in spec["paths"].values() for operation in path.values()
                  for code, answer in operation["responses"].items() if int(code) >= 400]
        assert errors and all(answer["content"]["application/json"] == {
            "schema": {"$ref": "#/components/schemas/Error"}} for answer in errors)


def test_an_error_response_matches_the_schema():
    response = apierror.error_response(403, "access-denied", "not granted: ask the admin")
    assert response.status == 403 and response.headers["X-Content-Type-Options"] == "nosniff"
    jsonschema.validate(json.loads(response.body), apierror.SCHEMA)
    with pytest.raises(jsonschema.ValidationError):  # a reason is a kebab-case label
        jsonschema.validate({"error": {"reason": "Not A Label", "message": "m"}}, apierror.SCHEMA)
