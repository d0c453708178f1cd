"""The one error shape of the workbench's HTTP services (the gateway, the airlock):
``{"error": {"reason", "message"}}``, as a response and as its OpenAPI schema. ``reason`` is the
``WorkbenchUserError.reason`` label a caller can act on; ``message`` says what to do next and
never holds a patient value. Each service's fuzz test checks every answer against this schema."""

from __future__ import annotations

from aiohttp import web

SCHEMA = {"type": "object", "required": ["error"], "additionalProperties": False,
          "properties": {"error": {
              "type": "object", "required": ["reason", "message"], "additionalProperties": False,
              "properties": {"reason": {"type": "string", "pattern": "^[a-z-]+$"},
                             "message": {"type": "string"}}}}}
_REF = {"$ref": "#/components/schemas/Error"}


def error_response(status: int, reason: str, message: str) -> web.Response:
    """An error answer in the one shape (never sniffed as anything but JSON)."""
    return web.json_response({"error": {"reason": reason, "message": message}}, status=status,
                             headers={"X-Content-Type-Options": "nosniff"})


def error_responses(codes: dict[int, str]) -> dict:
    """OpenAPI ``responses`` entries for these status codes (code -> description), each with
    the error schema (registered as ``components.schemas.Error``)."""
    return {str(code): {"description": text, "content": {"application/json": {"schema": _REF}}}
            for code, text in codes.items()}
