"""JSON bodies as the Go package writes them: HTML-safe, and the success and error shapes.

Go's ``encoding/json`` escapes ``<``, ``>`` and ``&`` as ``\\u003c``, ``\\u003e`` and
``\\u0026``; so does `json_bytes`, with every non-ASCII character escaped too, so
no service name or error message can become markup wherever a body lands.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.responses import Response

__all__ = ["JSONResponse", "error_response", "json_bytes", "ok_response"]


def json_bytes(value: object) -> bytes:
    """Encode *value* as compact, ASCII-only JSON with ``<``, ``>`` and ``&`` escaped."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


class JSONResponse(Response):
    """A response whose body is `json_bytes` of its content."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return json_bytes(content)


def ok_response(message: str) -> JSONResponse:
    """``200 {"status": "ok", "message": message}``."""
    return JSONResponse({"status": "ok", "message": message})


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """``status {"error": message}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)
