"""Where ``trisup run`` serves its control socket, and binding it safely.

The default path is ``$XDG_RUNTIME_DIR/trisup/<name>.sock``, else
``/tmp/trisup-<uid>/<name>.sock`` (``<name>`` is the manager's name). The
directory is created with mode 0700 when missing; one owned by another user, or
writable by group or others, is refused: the file permissions are the socket's
only authentication. The socket itself gets mode 0600.

A socket file nobody answers on (left by a ``kill -9``) is replaced; one that
answers belongs to a running instance and is an error. Stdlib only.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

__all__ = ["SocketError", "bind_socket", "default_dir", "default_socket", "is_live"]


class SocketError(Exception):
    """The control socket cannot be served or reached; the message names the path."""


def default_dir() -> Path:
    """``$XDG_RUNTIME_DIR/trisup``, else ``/tmp/trisup-<uid>``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return Path(runtime) / "trisup"
    return Path(f"/tmp/trisup-{os.getuid()}")


def default_socket(name: str) -> Path:
    """The default socket of a manager named *name*."""
    return default_dir() / f"{name}.sock"


def _check_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.lstat()
    except OSError as exc:
        raise SocketError(f"{directory}: cannot create the socket's directory: {exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise SocketError(f"{directory}: not a directory")
    if info.st_uid != os.getuid():
        raise SocketError(
            f"{directory}: owned by uid {info.st_uid}, not by this user (uid {os.getuid()})"
        )
    if info.st_mode & 0o022:
        mode = stat.S_IMODE(info.st_mode)
        raise SocketError(f"{directory}: writable by others (mode {mode:04o}); chmod 0700 it")


def is_live(path: Path | str) -> bool:
    """Whether something accepts connections on the Unix socket at *path*."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return False
    return True


def bind_socket(path: Path) -> socket.socket:
    """A Unix stream socket bound at *path* with mode 0600 (not listening yet).

    Raises:
        SocketError: the directory is unsafe, another instance answers on *path*,
            *path* is something else than a socket, or binding failed.
    """
    _check_dir(path.parent)
    try:
        info = path.lstat()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SocketError(f"{path}: {exc.strerror or exc}") from None
    else:
        if not stat.S_ISSOCK(info.st_mode):
            raise SocketError(f"{path}: exists and is not a socket")
        if is_live(path):
            raise SocketError(f"{path}: another trisup instance is serving on this socket")
        path.unlink(missing_ok=True)  # stale: left by an instance that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        os.chmod(path, 0o600)  # the directory is 0700: no one else could connect meanwhile
    except OSError as exc:
        sock.close()
        raise SocketError(
            f"{path}: cannot bind the control socket: {exc.strerror or exc}"
        ) from None
    return sock
