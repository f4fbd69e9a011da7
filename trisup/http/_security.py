"""Where the console listens, its token, and the guard every request passes.

The guard is plain ASGI middleware in front of the whole application. In order,
it refuses:

1. a path or query string longer than `MAX_PATH` / `MAX_QUERY` bytes (414);
2. without a token, a ``Host`` header that does not name a loopback address (403),
   so a DNS-rebinding page cannot reach a loopback console;
3. with a token, a request that does not carry it (401): ``X-Trisup-Token``,
   ``Authorization: Bearer``, or, for GET and HEAD only, HTTP Basic with the token
   as the password (so a browser can open the page); compared in constant time;
4. a POST without the ``X-Trisup-Token`` header (401 with a token, 403 without),
   from another origin (``Origin`` or ``Sec-Fetch-Site``), or with a body longer
   than `MAX_BODY` bytes (413). A cross-site form or a simple ``fetch`` can add
   neither that header nor a matching ``Origin``, and the console sets no cookies.

Every response also gets ``nosniff``, ``no-referrer``, ``DENY`` framing and, unless
the handler chose one, ``Cache-Control: no-store``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import final
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._json import error_response

__all__ = [
    "MAX_BODY",
    "MAX_PATH",
    "MAX_QUERY",
    "TOKEN_ENV",
    "TOKEN_HEADER",
    "Bind",
    "Guard",
    "is_loopback",
    "parse_bind",
    "resolve_token",
]

MAX_PATH = 2048
"""The longest request path accepted, in bytes."""
MAX_QUERY = 2048
"""The longest query string accepted, in bytes."""
MAX_BODY = 1024
"""The longest POST body accepted, in bytes (the API's POSTs take none)."""
TOKEN_HEADER = "X-Trisup-Token"
"""The header that carries the token; every POST must carry it."""
TOKEN_ENV = "TRISUP_TOKEN"
"""The environment variable read when no token is passed."""

_TOKEN_KEY = TOKEN_HEADER.lower().encode()
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


@final
@dataclass(frozen=True, slots=True)
class Bind:
    """A parsed ``HOST:PORT``; ``loopback`` tells whether only this machine can connect."""

    host: str
    port: int
    loopback: bool

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def is_loopback(host: str) -> bool:
    """Whether *host* (a name or an IP address, without brackets) is a loopback address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_bind(bind: str) -> Bind:
    """Parse ``HOST:PORT`` (``[::1]:8080`` for IPv6; an empty host means every interface).

    Raises:
        TypeError: *bind* is not a str.
        ValueError: it is not ``HOST:PORT`` with a port in 0..65535.
    """
    if not isinstance(bind, str):
        raise TypeError(f"bind must be a str 'HOST:PORT', not {type(bind).__name__}")
    text = bind.strip()
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or not rest.startswith(":"):
            raise ValueError(f"bind must be '[IPV6]:PORT', not {bind!r}")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError(f"bind must be 'HOST:PORT', not {bind!r}")
        if ":" in host:
            raise ValueError(f"an IPv6 bind address needs brackets ('[::1]:8080'), not {bind!r}")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f"bind port must be 0..65535, not {port_text!r}")
    return Bind(host, int(port_text), bool(host) and is_loopback(host))


def resolve_token(token: str | None) -> str | None:
    """The token to require: *token*, else ``$TRISUP_TOKEN``, else ``None``.

    Raises:
        TypeError: *token* is not a str or None.
        ValueError: the token is empty or not printable ASCII without spaces.
    """
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
        if token is None:
            return None
    if not isinstance(token, str):
        raise TypeError(f"token must be a str or None, not {type(token).__name__}")
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError("token must be non-empty printable ASCII without spaces")
    return token


def _host_of(value: str) -> str:
    """The host part of a ``Host`` header value."""
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        return value.partition(":")[0]
    return value


def _basic_password(credentials: bytes) -> bytes | None:
    try:
        decoded = base64.b64decode(credentials, validate=True)
    except (binascii.Error, ValueError):
        return None
    _, colon, password = decoded.partition(b":")
    return password if colon else None


def _same_origin(origin: bytes, host: bytes | None) -> bool:
    if host is None or origin == b"null":
        return False
    try:
        netloc = urlsplit(origin.decode("latin-1")).netloc
    except ValueError:
        return False
    return netloc.lower() == host.decode("latin-1").lower()


@final
class Guard:
    """ASGI middleware enforcing the console's request rules (see the module docstring).

    Args:
        app: the application behind the guard.
        token: the token every request must carry, or ``None``.
        check_host: refuse ``Host`` headers that do not name a loopback address
            (used without a token, when the console listens on loopback only).
    """

    __slots__ = ("_app", "_check_host", "_token")

    def __init__(self, app: ASGIApp, *, token: str | None, check_host: bool) -> None:
        self._app = app
        self._token = token.encode() if token is not None else None
        self._check_host = check_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def secure_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.extend(h for h in _SECURITY_HEADERS if h[0] not in names)
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            status, text, extra = refusal
            await error_response(status, text, extra)(scope, receive, secure_send)
            return
        if scope["method"] == "POST":
            body = await self._read_body(scope, receive)
            if body is None:
                await error_response(413, "request body too large")(scope, receive, secure_send)
                return
            receive = _replay(body, receive)
        await self._app(scope, receive, secure_send)

    def _refusal(self, scope: Scope) -> tuple[int, str, Mapping[str, str] | None] | None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
        raw_path = raw_path.partition(b"?")[0]
        query: bytes = scope.get("query_string", b"")
        if len(raw_path) > MAX_PATH or len(query) > MAX_QUERY:
            return 414, "request path too long", None
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), value)
        host = headers.get(b"host")
        if (
            self._check_host
            and host is not None
            and not is_loopback(_host_of(host.decode("latin-1")))
        ):
            return 403, "host not allowed", None
        method: str = scope["method"]
        if method == "POST":
            given = headers.get(_TOKEN_KEY)
            if given is None:
                if self._token is not None:
                    return 401, "unauthorized", {"WWW-Authenticate": 'Bearer realm="trisup"'}
                return 403, f"POST requests must carry the {TOKEN_HEADER} header", None
            if self._token is not None and not hmac.compare_digest(given, self._token):
                return 401, "unauthorized", {"WWW-Authenticate": 'Bearer realm="trisup"'}
            origin = headers.get(b"origin")
            if origin is not None and not _same_origin(origin, host):
                return 403, "cross-origin request refused", None
            if headers.get(b"sec-fetch-site", b"same-origin") not in (b"same-origin", b"none"):
                return 403, "cross-origin request refused", None
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                return 413, "request body too large", None
        elif self._token is not None and not self._authorized(headers, method):
            return (
                401,
                "unauthorized",
                {"WWW-Authenticate": 'Basic realm="trisup", charset="UTF-8"'},
            )
        return None

    def _authorized(self, headers: Mapping[bytes, bytes], method: str) -> bool:
        token = self._token
        assert token is not None
        candidates: list[bytes] = []
        given = headers.get(_TOKEN_KEY)
        if given is not None:
            candidates.append(given)
        scheme, _, credentials = headers.get(b"authorization", b"").strip().partition(b" ")
        scheme = scheme.lower()
        if scheme == b"bearer":
            candidates.append(credentials.strip())
        elif scheme == b"basic" and method in ("GET", "HEAD"):
            password = _basic_password(credentials.strip())
            if password is not None:
                candidates.append(password)
        ok = False
        for candidate in candidates:
            ok |= hmac.compare_digest(candidate, token)
        return ok

    @staticmethod
    async def _read_body(scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or ``None`` once it exceeds `MAX_BODY` bytes."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that returns *body* once, then defers to *receive*."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
