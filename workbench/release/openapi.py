"""The airlock's HTTP API as OpenAPI 3.1 (served at GET /openapi.json, fuzzed by
tests/release/test_fuzz.py). Callers are trusted uids only; the acting user is a header claim
(``X-Workbench-Actor``) or a reviewer token (``X-Workbench-Reviewer-Token``)."""

from __future__ import annotations

from workbench.apierror import SCHEMA as ERROR_SCHEMA
from workbench.apierror import error_responses

MAX_BODY = 32 * 1024 * 1024  # a release request carries its output (tables, figures) inline

_ERRORS = error_responses({400: "bad request", 401: "no or bad identity", 403: "refused",
                           404: "unknown", 405: "method not allowed", 409: "wrong state",
                           413: "too large", 500: "airlock fault",
                           503: "policy or provenance unavailable"})
_ACTOR = {"name": "X-Workbench-Actor", "in": "header", "required": False,
          "schema": {"type": "string", "maxLength": 64}}
_STUDY = {"name": "X-Workbench-Study", "in": "header", "required": False,
          "schema": {"type": "string", "maxLength": 64}}
_ID = {"name": "request_id", "in": "path", "required": True,
       "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"}}
_OBJECT = {"application/json": {"schema": {"type": "object"}}}
_LIST = {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "workbench output airlock", "version": "1",
             "description": "One Unix socket; the caller is the peer uid (root, the gateway or "
                            "the airlock; a study server acts as its study's kernels). "
                            "Every error has the shape {error: {reason, message}}."},
    "paths": {
        "/requests": {
            "post": {"summary": "check a release request and, unless a rule fails, submit it",
                     "parameters": [_ACTOR, _STUDY],
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/ReleaseRequest"}}}},
                     "responses": {"201": {"description": "stored", "content": _OBJECT},
                                   "200": {"description": "dry run", "content": _OBJECT},
                                   **_ERRORS}},
            "get": {"summary": "the requests the actor may see",
                    "parameters": [_ACTOR, _STUDY,
                                   {"name": "study", "in": "query", "required": False,
                                    "schema": {"type": "string"}},
                                   {"name": "state", "in": "query", "required": False,
                                    "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "summaries", "content": _LIST},
                                  **_ERRORS}}},
        "/requests/{request_id}": {"get": {
            "summary": "one request (evidence for its reviewers)", "parameters": [_ID, _ACTOR],
            "responses": {"200": {"description": "detail", "content": _OBJECT}, **_ERRORS}}},
        "/requests/{request_id}/decision": {"post": {
            "summary": "a reviewer's decision", "parameters": [_ID, _ACTOR],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Decision"}}}},
            "responses": {"200": {"description": "summary", "content": _OBJECT}, **_ERRORS}}},
        "/requests/{request_id}/comments": {"post": {
            "summary": "a comment by a reviewer or the requester", "parameters": [_ID, _ACTOR],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Comment"}}}},
            "responses": {"201": {"description": "the thread", "content": _OBJECT},
                          **_ERRORS}}},
        **{f"/requests/{{request_id}}/{action}": {"post": {
            "summary": f"the requester {done} the request (a study server or the gateway)",
            "parameters": [_ID, _ACTOR],
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Comment"}}}},
            "responses": {"200": {"description": "summary", "content": _OBJECT}, **_ERRORS}}}
           for action, done in (("withdraw", "withdraws"), ("resubmit", "resubmits"))},
        "/requests/{request_id}/files/{name}": {"get": {
            "summary": "a released file",
            "parameters": [_ID, _ACTOR, {"name": "name", "in": "path", "required": True,
                                         "schema": {"type": "string", "maxLength": 200}}],
            "responses": {"200": {"description": "the file", "content": {
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}},
                **_ERRORS}}},
        "/health": {"get": {"summary": "liveness", "responses": {
            "200": {"description": "ok", "content": _OBJECT}, **_ERRORS}}},
        "/openapi.json": {"get": {"summary": "this document", "responses": {
            "200": {"description": "OpenAPI", "content": _OBJECT}, **_ERRORS}}},
    },
    "components": {"schemas": {
        "Error": ERROR_SCHEMA,
        "ReleaseRequest": {"type": "object", "required": ["name", "description", "payload"],
                           "properties": {"name": {"type": "string"},
                                          "description": {"type": "string"},
                                          "justification": {"type": "string"},
                                          "controls": {"type": "array",
                                                       "items": {"type": "string"}},
                                          "payload": {"type": "object"}}},
        "Comment": {"type": "object", "required": ["comment"],
                    "properties": {"comment": {"type": "string"}}},
        "Decision": {"type": "object", "required": ["decision"],
                     "properties": {"decision": {"type": "string",
                                                 "enum": ["approve", "reject", "return"]},
                                    "comment": {"type": "string"}}},
    }},
}
