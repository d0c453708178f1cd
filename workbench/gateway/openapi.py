"""The gateway's HTTP API as OpenAPI 3.1 (served at GET /openapi.json, documented in
docs/gateway.md, fuzzed by tests/gateway/test_fuzz.py)."""

from __future__ import annotations

from workbench.apierror import SCHEMA as ERROR_SCHEMA
from workbench.apierror import error_responses

MAX_ROWS = 2_000_000  # the largest row limit a single Arrow fetch may ask for

_ERRORS = error_responses({400: "bad request", 403: "refused", 404: "unknown",
                           405: "method not allowed", 409: "view cannot be served",
                           413: "too large", 500: "gateway fault",
                           503: "provenance, policy or secure service unavailable"})
_VIEW_ID = {"name": "view_id", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": 64}}

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "workbench data gateway", "version": "1",
             "description": "One Unix socket per study; the study is the socket's, the caller is "
                            "the peer uid. Every error has the shape {error: {reason, message}}."},
    "paths": {
        "/views": {"get": {
            "summary": "the views granted to this study",
            "responses": {"200": {"description": "granted views", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ViewList"}}}}, **_ERRORS}}},
        "/views/{view_id}": {"get": {
            "summary": "describe one granted view", "parameters": [_VIEW_ID],
            "responses": {"200": {"description": "the view", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ViewInfo"}}}}, **_ERRORS}}},
        "/views/{view_id}/arrow": {"get": {
            "summary": "fetch a granted view as an Arrow IPC stream: its pseudonymised rows, or "
                       "its synthetic twin (no real row) when the study sees it as aggregates",
            "parameters": [_VIEW_ID,
                           {"name": "columns", "in": "query", "required": False,
                            "description": "comma-separated plaintext columns",
                            "schema": {"type": "string", "maxLength": 4096}},
                           {"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ROWS}},
                           {"name": "seed", "in": "query", "required": False,
                            "description": "which synthetic twin (aggregates only)",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 999_999_999}}],
            "responses": {"200": {"description": "Arrow IPC stream", "headers": {
                "X-Workbench-Synthetic": {
                    "description": "'twin' when the body is the view's synthetic twin",
                    "schema": {"type": "string", "enum": ["twin"]}}}, "content": {
                "application/vnd.apache.arrow.stream": {"schema": {"type": "string",
                                                                   "format": "binary"}}}},
                **_ERRORS}}},
        "/secure/{op}": {"post": {
            "summary": "run a secure (homomorphically encrypted) operation on a granted view",
            "parameters": [{"name": "op", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[a-z_]{1,40}$"}}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/SecureRequest"}}}},
            "responses": {"200": {"description": "released aggregate", "content": {
                "application/json": {"schema": {"type": "object"}}}}, **_ERRORS}}},
        "/openapi.json": {"get": {"summary": "this document", "responses": {
            "200": {"description": "OpenAPI", "content": {"application/json": {
                "schema": {"type": "object"}}}}}}},
    },
    "components": {"schemas": {
        "Error": ERROR_SCHEMA,
        "Column": {"type": "object", "required": ["name", "type", "sensitivity", "plaintext"],
                   "properties": {"name": {"type": "string"}, "type": {"type": "string"},
                                  "description": {"type": "string"},
                                  "sensitivity": {"type": "string"},
                                  "plaintext": {"type": "boolean"},
                                  "role": {"type": ["string", "null"]},
                                  "levels": {"type": ["array", "null"],
                                             "items": {"type": "string"}},
                                  "granularity": {"type": ["number", "null"]},
                                  "horizon": {"type": ["number", "null"]},
                                  "grid": {"type": ["array", "null"],
                                           "items": {"type": "number"}},
                                  "derived_from": {"type": ["string", "null"]}}},
        "ViewInfo": {"type": "object", "required": ["id", "title", "version", "columns"],
                     "properties": {"id": {"type": "string"}, "title": {"type": "string"},
                                    "description": {"type": "string"},
                                    "version": {"type": "string"},
                                    "columns": {"type": "array",
                                                "items": {"$ref": "#/components/schemas/Column"}},
                                    "holders": {"type": "array", "items": {"type": "string"}},
                                    "quality": {"type": "object"},
                                    "visibility": {"enum": ["rows", "aggregates"]}}},
        "ViewList": {"type": "object", "required": ["study", "views"],
                     "properties": {"study": {"type": "string"},
                                    "views": {"type": "array",
                                              "items": {"$ref": "#/components/schemas/ViewInfo"}},
                                    "unavailable": {"type": "array",
                                                    "items": {"type": "string"}}}},
        "SecureRequest": {"type": "object", "required": ["view"], "additionalProperties": False,
                          "properties": {"view": {"type": "string", "maxLength": 64},
                                         "params": {"type": "object"},
                                         "columns": {"type": "array", "maxItems": 200,
                                                     "items": {"type": "string"}}}},
    }},
}
