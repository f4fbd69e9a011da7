"""The commands that control a running ``trisup run``: status, start, stop, restart, reset,
tail and reload, over its Unix socket or its HTTP console.

Where to connect: ``--socket PATH``; else ``--url URL`` (with ``--token`` or
``$TRISUP_TOKEN``); else ``-c FILE``, whose ``[manager]`` ``socket`` (or name)
gives the default path; else the only socket in the default directory. Exit
codes: 0 on success, 1 on a refused or failed action (or no connection), 2 on
usage errors (argparse's).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import tomllib
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, final

from ._report import ERROR_WIDTH, Row, align, clip, format_duration, row_from_dict
from ._socketpath import default_dir, default_socket

__all__ = ["Client", "ControlError", "connect", "control_command"]

VERBS = ("start", "stop", "restart", "reset")
_TOKEN_HEADER = "X-Trisup-Token"
_WAIT = 25.0  # seconds per long poll of tail -f


class ControlError(Exception):
    """A command failed; the message is printed after ``trisup: ``."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@final
@dataclass(frozen=True, slots=True)
class Client:
    """Requests to the control API at *socket_path* or *url*, one connection each."""

    socket_path: str | None
    url: str | None
    token: str | None
    timeout: float

    @property
    def where(self) -> str:
        """The socket's path or the URL, for messages."""
        return self.socket_path or self.url or "?"

    def request(self, method: str, path: str, *, timeout: float | None = None) -> object:
        """Send one request; return the decoded JSON of a 2xx answer.

        Raises:
            ControlError: no connection, or a non-2xx answer (its ``error`` text).
        """
        wait = self.timeout if timeout is None else timeout
        headers = {"Accept": "application/json", "Host": "localhost"}
        if self.socket_path is not None:
            conn: http.client.HTTPConnection = _UnixConnection(self.socket_path, wait)
            prefix = ""
            headers[_TOKEN_HEADER] = "-"  # the file mode is the authentication
        else:
            assert self.url is not None
            parts = urllib.parse.urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ControlError(f"{self.url}: not an http(s) URL")
            kind = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = kind(parts.netloc, timeout=wait)
            prefix = parts.path.rstrip("/")
            headers["Host"] = parts.netloc
            headers[_TOKEN_HEADER] = self.token or "-"
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(method, prefix + path, headers=headers)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ControlError(f"{self.where}: cannot connect: {reason}") from None
        finally:
            conn.close()
        try:
            data: object = json.loads(body)
        except ValueError:
            raise ControlError(f"{self.where}{path}: HTTP {response.status}, not JSON") from None
        if not 200 <= response.status < 300:
            error = data.get("error") if isinstance(data, dict) else None  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            if not error:
                error = f"{self.where}{path}: HTTP {response.status} {response.reason}"
            raise ControlError(str(error))  # pyright: ignore[reportUnknownArgumentType]
        return data

    def services(self) -> list[dict[str, object]]:
        """``GET /api/services``."""
        data = self.request("GET", "/api/services")
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):  # pyright: ignore[reportUnknownVariableType]
            raise ControlError(f"{self.where}/api/services did not return an array of objects")
        return data  # pyright: ignore[reportUnknownVariableType]


def _file_socket(file: str) -> str:
    """The socket a configuration file's ``trisup run`` serves (read leniently)."""
    try:
        document = tomllib.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ControlError(f"{file}: cannot read its [manager] table: {exc}") from None
    table: object = document.get("manager", {})
    manager: dict[str, object] = table if isinstance(table, dict) else {}  # pyright: ignore[reportUnknownVariableType]
    configured = manager.get("socket")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if isinstance(configured, str) and configured:
        return str(Path(file).resolve().parent / Path(configured).expanduser())
    name = manager.get("name", "trisup")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    return str(default_socket(name if isinstance(name, str) and name else "trisup"))


def connect(
    *,
    socket_path: str | None,
    url: str | None,
    token: str | None,
    file: str | None,
    timeout: float,
) -> Client:
    """The client the options name (see the module docstring).

    Raises:
        ControlError: no instance found, or several and none chosen.
    """
    if socket_path is not None:
        return Client(socket_path, None, None, timeout)
    if url is not None:
        return Client(None, url, token or os.environ.get("TRISUP_TOKEN") or None, timeout)
    if file is not None:
        return Client(_file_socket(file), None, None, timeout)
    directory = default_dir()
    found = sorted(directory.glob("*.sock")) if directory.is_dir() else []
    if not found:
        raise ControlError(f"no trisup instance found in {directory}: pass -s, -c or --url")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ControlError(f"several instances in {directory} ({names}): pass -s or -c")
    return Client(str(found[0]), None, None, timeout)


# ---------------------------------------------------------------- commands


def _status(client: Client, names: Sequence[str], as_json: bool, out: TextIO) -> int:
    services = client.services()
    if names:
        known = {str(s.get("name")) for s in services}
        missing = [n for n in names if n not in known]
        if missing:
            raise ControlError(f"service not found: {', '.join(missing)}")
        services = [s for s in services if s.get("name") in names]
    if as_json:
        out.write(json.dumps(services, indent=2) + "\n")
    else:
        out.write(status_table([row_from_dict(s) for s in services]))
    return 0


STATUS_HEADERS = ("SERVICE", "STATUS", "PHASE", "PID", "UPTIME", "RESTARTS", "LAST ERROR")


def status_table(rows: Sequence[Row], *, max_error: int = ERROR_WIDTH) -> str:
    """``trisup status``'s table: each service's status, phase, pid, uptime, restarts, error."""
    cells = [
        (
            r.name,
            r.status,
            r.phase,
            "-" if r.pid is None else str(r.pid),
            format_duration(r.uptime) if r.uptime > 0 else "-",
            str(r.restarts),
            clip(r.error, max_error) if r.error else "-",
        )
        for r in rows
    ]
    return align(STATUS_HEADERS, cells, numeric=frozenset({3, 4, 5}))


def _act(
    client: Client, verb: str, names: Sequence[str], as_json: bool, out: TextIO, err: TextIO
) -> int:
    """A verb on each name, or on every service with ``all`` (which skips no-ops)."""
    every = list(names) == ["all"]
    results: list[dict[str, object]] = []
    if every and verb == "restart":
        data = client.request("POST", "/api/services/restart")
        results.append({"name": "all", "ok": True, "message": _message(data)})
    else:
        targets = _targets(client.services(), verb) if every else list(names)
        for name in targets:
            quoted = urllib.parse.quote(name, safe="")
            try:
                data = client.request("POST", f"/api/service/{quoted}/{verb}")
            except ControlError as exc:
                results.append({"name": name, "ok": False, "error": str(exc)})
                if "cannot connect" in str(exc):
                    break
                continue
            results.append({"name": name, "ok": True, "message": _message(data)})
    failed = [r for r in results if not r["ok"]]
    if as_json:
        out.write(json.dumps(results, indent=2) + "\n")
    else:
        for r in results:
            if r["ok"]:
                out.write(f"{r['message']}\n")
            else:
                err.write(f"trisup: {verb} {r['name']}: {r['error']}\n")
    return 1 if failed else 0


def _targets(services: list[dict[str, object]], verb: str) -> list[str]:
    """The names ``all`` means: for stop those not stopped, for start those not running."""
    names: list[str] = []
    for service in services:
        stopped = service.get("stopped") is True
        running = service.get("phase") in ("starting", "running") and not stopped
        if (verb == "stop" and stopped) or (verb == "start" and running):
            continue
        names.append(str(service.get("name")))
    return names


def _message(data: object) -> str:
    if isinstance(data, dict):
        return str(data.get("message", ""))  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
    return ""


def _output(
    client: Client, name: str, after: int | None, wait: float
) -> tuple[int, list[dict[str, str]]]:
    quoted = urllib.parse.quote(name, safe="")
    query = "" if after is None else f"?after={after}&wait={wait:g}"
    data = client.request(
        "GET", f"/api/service/{quoted}/output{query}", timeout=wait + client.timeout
    )
    if not isinstance(data, dict):
        raise ControlError(f"{client.where}: the output of {name} is not a JSON object")
    count = data.get("count")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    lines = data.get("lines")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if not isinstance(count, int) or not isinstance(lines, list):
        raise ControlError(f"{client.where}: the output of {name} lacks count or lines")
    return count, [{"stream": str(x.get("stream")), "line": str(x.get("line"))} for x in lines]  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType, reportUnknownArgumentType]


def _tail(client: Client, name: str, lines: int, follow: bool, as_json: bool, out: TextIO) -> int:
    def show(items: list[dict[str, str]]) -> None:
        for item in items:
            out.write(json.dumps(item) + "\n" if as_json else item["line"] + "\n")
        out.flush()

    count, first = _output(client, name, None, 0)
    show(first[-lines:] if lines else [])
    while follow:
        count, more = _output(client, name, count, _WAIT)
        show(more)
    return 0


def _reload(client: Client, as_json: bool, out: TextIO) -> int:
    data = client.request("POST", "/api/reload", timeout=client.timeout)
    out.write(json.dumps(data, indent=2) + "\n" if as_json else f"reloaded: {_message(data)}\n")
    return 0


def control_command(
    command: str,
    *,
    names: Sequence[str] = (),
    socket_path: str | None = None,
    url: str | None = None,
    token: str | None = None,
    file: str | None = None,
    timeout: float = 60.0,
    as_json: bool = False,
    lines: int = 10,
    follow: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run one control command (``status``, a verb, ``tail`` or ``reload``); the exit code.

    *out* and *err* default to the current ``sys.stdout`` and ``sys.stderr``.
    """
    stdout: TextIO = sys.stdout if out is None else out
    stderr: TextIO = sys.stderr if err is None else err
    try:
        client = connect(socket_path=socket_path, url=url, token=token, file=file, timeout=timeout)
        if command == "status":
            return _status(client, names, as_json, stdout)
        if command in VERBS:
            return _act(client, command, names, as_json, stdout, stderr)
        if command == "tail":
            return _tail(client, names[0], lines, follow, as_json, stdout)
        if command == "reload":
            return _reload(client, as_json, stdout)
    except ControlError as exc:
        stderr.write(f"trisup: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130 if command != "tail" else 0
    raise ValueError(f"unknown command {command!r}")
