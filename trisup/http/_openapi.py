"""The OpenAPI 3.1 document of the console, built for its prefix and token setting."""

from __future__ import annotations

from typing import Any

from .. import __version__
from .._status import Phase, ServiceStatus
from ._security import TOKEN_HEADER

__all__ = ["VERBS", "openapi_document"]

VERBS = ("restart", "stop", "start", "reset")
"""The per-service actions, as they appear in the paths."""

_DURATION = {"type": "integer", "description": "nanoseconds"}
_TIME = {
    "type": "string",
    "format": "date-time",
    "description": 'RFC 3339 UTC; unset: "0001-01-01T00:00:00Z"',
}
_COUNT = {"type": "integer", "minimum": 0}

_INFO_PROPERTIES: dict[str, object] = {
    "name": {"type": "string"},
    "status": {"type": "string", "enum": [str(s) for s in ServiceStatus]},
    "start_count": _COUNT,
    "error_count": _COUNT,
    "success_count": _COUNT,
    "last_error": {"type": "string"},
    "last_error_time": _TIME,
    "last_start_time": _TIME,
    "last_stop_time": _TIME,
    "current_uptime": _DURATION,
    "total_uptime": _DURATION,
    "average_uptime": _DURATION,
    "created_at": _TIME,
    "restarts_in_window": _COUNT,
    "stopped": {"type": "boolean"},
    "failed": {"type": "boolean"},
    "restart_count": _COUNT,
    "consec_failures": _COUNT,
    "window_restarts": _COUNT,
    "current_delay_ns": _DURATION,
    "current_delay": {"type": "string", "description": 'a Go duration: "0s", "1.5s", "1m0s"'},
    "window_start": _TIME,
    "last_service_start": _TIME,
    "phase": {
        "type": "string",
        "enum": [str(p) for p in Phase],
        "description": "What its instance is doing now (trisup's addition to the Go keys); "
        "a service stopped by hand has stopped=true and the phase it is in (idle, or "
        "stopping while it exits).",
    },
    "critical": {
        "type": "boolean",
        "description": "Whether /readyz counts the service (ServiceConfig.critical; trisup's "
        "addition).",
    },
    "depends_on": {
        "type": "array",
        "items": {"type": "string"},
        "description": "Its direct dependencies, as given to Manager.add (trisup's addition).",
    },
    "pid": {
        "type": ["integer", "null"],
        "description": "A process's child, if it has one now (trisup's addition; only for "
        "processes).",
    },
}
_SERVICE_INFO: dict[str, object] = {
    "type": "object",
    "description": "A service's metrics and runtime state, as the Go package encodes them, "
    "and its lifecycle phase.",
    "additionalProperties": False,
    "required": [k for k in _INFO_PROPERTIES if k != "pid"],
    "properties": _INFO_PROPERTIES,
}

_NAMES = {"type": "array", "items": {"type": "string"}}
_LINES = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["stream", "line"],
        "properties": {
            "stream": {"type": "string", "enum": ["stdout", "stderr"]},
            "line": {"type": "string"},
        },
    },
}
_WHEN = {"type": ["string", "null"], "format": "date-time", "description": "RFC 3339 UTC"}
_SECONDS = {"type": ["number", "null"], "minimum": 0, "description": "seconds"}


def _object(properties: dict[str, object], description: str = "") -> dict[str, object]:
    """An object schema with exactly *properties*, each required."""
    schema: dict[str, object] = {
        "type": "object",
        "additionalProperties": False,
        "required": list(properties),
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


_NULLABLE_OBJECT = ["object", "null"]
_DETAILS = _object(
    {
        "name": {"type": "string"},
        "group": {"type": "string", "description": 'its group ("" for the top manager)'},
        "phase": {"type": "string", "enum": [str(p) for p in Phase]},
        "shown": {"type": "string", "description": 'its shown phase ("stopped" while held)'},
        "status": {"type": "string", "enum": [str(s) for s in ServiceStatus]},
        "critical": {"type": "boolean"},
        "depends_on": _NAMES,
        "dependents": {**_NAMES, "description": "its direct dependents in the same group"},
        "process": {
            **_object(
                {
                    "pid": {"type": ["integer", "null"]},
                    "argv": _NAMES,
                    "cwd": {"type": ["string", "null"]},
                    "returncode": {"type": ["integer", "null"]},
                    "last_exit": {
                        "type": ["string", "null"],
                        "description": '"exited with code 1", "killed by SIGTERM"',
                    },
                    "last_exit_time": _WHEN,
                    "relaunches": _COUNT,
                },
                "A process's child: null for other services.",
            ),
            "type": _NULLABLE_OBJECT,
        },
        "output": {
            **_object(
                {"count": _COUNT, "lines": _LINES},
                "A process's output ring (poll output?after=count for more); null for "
                "other services.",
            ),
            "type": _NULLABLE_OBJECT,
        },
        "config": {
            "type": "object",
            "description": "Its effective ServiceConfig: restart_policy by name (always, "
            "on_failure, never), durations in seconds, null where unset.",
        },
        "schedule": _object(
            {
                "next_attempt_at": {**_WHEN, "description": "while it waits out a backoff"},
                "next_attempt_in": _SECONDS,
                "remaining_failures": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "description": "the failure that marks it failed (1: the next one); "
                    "0: failed already; null: restarted for ever",
                },
                "gives_up_at": {
                    **_WHEN,
                    "description": "when, if every attempt fails at once (jitter aside)",
                },
                "text": {"type": "string"},
            },
            "Its restart schedule from now.",
        ),
        "error": {
            **_object(
                {
                    "type": {"type": "string", "description": "the exception's class name"},
                    "message": {"type": "string"},
                    "time": _WHEN,
                    "traceback": {"type": "string"},
                },
                "Its last error; null if none.",
            ),
            "type": _NULLABLE_OBJECT,
        },
        "events": {
            "type": "array",
            "description": "Its recent events (at most 50), oldest first.",
            "items": _object(
                {
                    "ts": {"type": "number", "description": "wall-clock seconds"},
                    "kind": {"type": "string"},
                    "message": {"type": "string"},
                }
            ),
        },
        "info": {"$ref": "#/components/schemas/ServiceInfo"},
    },
    "Everything the details panel shows of one service.",
)
_SCHEMAS: dict[str, object] = {
    "ServiceInfo": _SERVICE_INFO,
    "Details": _DETAILS,
    "Output": {
        "type": "object",
        "description": "A process's output lines after the first `after` (those still in its "
        "ring), oldest first.",
        "additionalProperties": False,
        "required": ["name", "pid", "count", "lines"],
        "properties": {
            "name": {"type": "string"},
            "pid": {"type": ["integer", "null"], "description": "the current child, if any"},
            "count": {**_COUNT, "description": "lines received in all: the next `after`"},
            "lines": _LINES,
        },
    },
    "Reload": {
        "type": "object",
        "description": "What a reload did, by service name.",
        "additionalProperties": False,
        "required": ["status", "message", "added", "removed", "changed", "unchanged", "notes"],
        "properties": {
            "status": {"const": "ok"},
            "message": {"type": "string"},
            "added": _NAMES,
            "removed": _NAMES,
            "changed": _NAMES,
            "unchanged": _NAMES,
            "notes": _NAMES,
        },
    },
    "Ok": {
        "type": "object",
        "additionalProperties": False,
        "required": ["status", "message"],
        "properties": {"status": {"const": "ok"}, "message": {"type": "string"}},
    },
    "Error": {
        "type": "object",
        "additionalProperties": False,
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Ready": {
        "type": "object",
        "additionalProperties": False,
        "required": ["status", "message"],
        "properties": {
            "status": {"const": "ok"},
            "message": {"type": "string"},
            "checks": {"$ref": "#/components/schemas/Checks"},
            "warnings": _NAMES,
        },
    },
    "NotReady": {
        "type": "object",
        "additionalProperties": False,
        "required": ["error", "not_ready"],
        "properties": {
            "error": {"type": "string"},
            "not_ready": {"type": "array", "items": {"type": "string"}},
            "checks": {"$ref": "#/components/schemas/Checks"},
            "warnings": _NAMES,
        },
    },
    "Checks": {
        "type": "array",
        "description": "With ?verbose: every service, whether it is ready and whether it "
        "counts (critical, meant to run, not excluded).",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "ready", "critical", "excluded", "counted", "phase"],
            "properties": {
                "name": {"type": "string"},
                "ready": {"type": "boolean"},
                "critical": {"type": "boolean"},
                "excluded": {"type": "boolean"},
                "counted": {"type": "boolean"},
                "phase": {"type": "string", "enum": [str(p) for p in Phase]},
            },
        },
    },
}

_ERROR_TEXT = {
    400: "A malformed query parameter.",
    401: "The token is missing or wrong.",
    403: "Refused: a non-loopback Host, another origin, or a POST without the token header.",
    404: "No service of that name.",
    409: "Conflict: stopping a stopped service, starting a running one, or a stopping manager.",
    422: "The configuration file is invalid; nothing changed.",
    500: "A step of the reload failed; the others were applied.",
    413: "The request body is too large.",
    414: "The request path or query is too long.",
    503: "Too many event streams are open.",
    504: "The service did not stop within its stop_timeout.",
}


def _json(schema: str, description: str) -> dict[str, object]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _errors(*codes: int) -> dict[str, object]:
    return {str(code): _json("Error", _ERROR_TEXT[code]) for code in codes}


def openapi_document(
    prefix: str, *, token_required: bool, reload: bool = False
) -> dict[str, object]:
    """The OpenAPI document of a console under *prefix*.

    Args:
        prefix: the console's path prefix (``""`` or ``/a/b``).
        token_required: whether a token is configured; if so every operation
            lists the ways to present it and may answer 401.
        reload: whether ``POST P/api/reload`` exists (under ``trisup run``).
    """
    auth = (401,) if token_required else ()
    get_errors = (*auth, 403, 414)
    post_errors = (*auth, 403, 409, 413, 414)
    token_param = {
        "name": TOKEN_HEADER,
        "in": "header",
        "required": True,
        "description": "The token; any value when none is configured (it proves the request "
        "is not a cross-site form).",
        "schema": {"type": "string"},
    }
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "The service's name, percent-encoded (a / in it as %2F).",
        "schema": {"type": "string"},
    }
    group_param = {
        "name": "group",
        "in": "query",
        "required": False,
        "description": "The group the service is in: the path of a nested manager (jobs, "
        "jobs/sub); absent or empty: the console's manager. Unknown: 404.",
        "schema": {"type": "string"},
    }
    api = f"{prefix}/api"

    def get(summary: str, responses: dict[str, object], **extra: object) -> dict[str, Any]:
        return {
            "get": {"summary": summary, "responses": {**responses, **_errors(*get_errors)}, **extra}
        }

    paths: dict[str, dict[str, Any]] = {
        f"{prefix}/": {
            "get": {
                "summary": "The live console page.",
                "responses": {
                    "200": {
                        "description": "The page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    **_errors(*get_errors),
                },
            }
        },
        f"{api}/services": get(
            "Every service's info, in registration order.",
            {
                "200": {
                    "description": "The services.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/ServiceInfo"},
                            }
                        }
                    },
                }
            },
        ),
        f"{api}/service/{{name}}": get(
            "One service's info.",
            {"200": _json("ServiceInfo", "The service."), **_errors(404)},
            parameters=[name_param, group_param],
        ),
        f"{api}/service/{{name}}/details": get(
            "Everything the details panel shows: process, output, configuration, restart "
            "schedule, last error with its traceback, recent events.",
            {"200": _json("Details", "The details."), **_errors(404)},
            parameters=[name_param, group_param],
        ),
        f"{api}/service/{{name}}/output": get(
            "A process's recent output, then (with wait) the next lines as a long poll.",
            {
                "200": _json("Output", "The lines."),
                **_errors(400, 404),
            },
            parameters=[
                name_param,
                group_param,
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "Skip the first `after` lines ever received (the `count` "
                    "of an earlier answer); absent: every line in the ring. A number "
                    "beyond `count` (a new instance) reads as 0.",
                    "schema": {"type": "integer", "minimum": 0},
                },
                {
                    "name": "wait",
                    "in": "query",
                    "required": False,
                    "description": "Seconds to wait for a line when there is none yet "
                    "(default 0, at most 60).",
                    "schema": {"type": "number", "minimum": 0, "maximum": 60},
                },
            ],
        ),
        f"{api}/services/restart": {
            "post": {
                "summary": "Restart every service, concurrently; per-service errors are logged.",
                "parameters": [token_param],
                "responses": {"200": _json("Ok", "Restarted."), **_errors(*post_errors)},
            }
        },
        f"{api}/events": {
            "get": {
                "summary": "The events of the manager and of every manager nested in it "
                "(groups), as server-sent events (snapshot first).",
                "responses": {
                    "200": {
                        "description": "An endless event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_errors(*get_errors, 503),
                },
            }
        },
        f"{api}/openapi.json": get(
            "This document.",
            {
                "200": {
                    "description": "The OpenAPI document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        ),
        "/metrics": get(
            "Prometheus metrics (text exposition format, or OpenMetrics when asked for).",
            {
                "200": {
                    "description": "The metrics.",
                    "content": {
                        "text/plain": {"schema": {"type": "string"}},
                        "application/openmetrics-text": {"schema": {"type": "string"}},
                    },
                }
            },
        ),
        "/healthz": get(
            "Liveness: 200 while the manager serves.",
            {"200": _json("Ok", "Serving."), "503": _json("Error", "Stopping or stopped.")},
        ),
        "/readyz": {
            "get": {
                "summary": "Readiness: 200 once every critical service meant to run is ready.",
                "parameters": [
                    {
                        "name": "exclude",
                        "in": "query",
                        "required": False,
                        "description": "A service not to count (repeatable), as the "
                        "Kubernetes API server's /readyz?exclude=.",
                        "schema": {"type": "array", "items": {"type": "string"}},
                        "style": "form",
                        "explode": True,
                    },
                    {
                        "name": "verbose",
                        "in": "query",
                        "required": False,
                        "description": "List every service's check.",
                        "allowEmptyValue": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json("Ready", "Ready."),
                    "503": _json("NotReady", "Not ready, with the names."),
                    **_errors(*get_errors),
                },
            }
        },
    }
    for verb in VERBS:
        extra = (404, 504) if verb in ("restart", "stop") else (404,)
        paths[f"{api}/service/{{name}}/{verb}"] = {
            "post": {
                "summary": f"{verb.capitalize()} one service.",
                "parameters": [name_param, group_param, token_param],
                "responses": {"200": _json("Ok", "Done."), **_errors(*post_errors, *extra)},
            }
        }
    if reload:
        paths[f"{api}/reload"] = {
            "post": {
                "summary": "Re-read the TOML file: add, delete and replace the services "
                "that changed; leave the others running.",
                "parameters": [token_param],
                "responses": {
                    "200": _json("Reload", "Reloaded."),
                    **_errors(*post_errors, 422, 500),
                },
            }
        }
    schemes = {
        "tokenHeader": {"type": "apiKey", "in": "header", "name": TOKEN_HEADER},
        "bearer": {"type": "http", "scheme": "bearer"},
        "basic": {
            "type": "http",
            "scheme": "basic",
            "description": "any user, the token as password; GET only",
        },
    }
    document: dict[str, object] = {
        "openapi": "3.1.0",
        "info": {
            "title": "trisup console",
            "version": __version__,
            "description": "The control plane of a trisup manager. Success bodies are "
            '{"status": "ok", "message": ...}; error bodies are {"error": ...}.',
        },
        "paths": paths,
        "components": {"schemas": _SCHEMAS, "securitySchemes": schemes},
    }
    if token_required:
        document["security"] = [{"tokenHeader": []}, {"bearer": []}, {"basic": []}]
        for item in paths.values():
            if "post" in item:
                item["post"]["security"] = [{"tokenHeader": []}]
    return document
