"""The control socket's path and its safe binding (`trisup._socketpath`), in process."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from trisup._socketpath import SocketError, bind_socket, default_dir, default_socket, is_live


def test_default_path_under_xdg_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_dir() == Path("/run/user/1000/trisup")
    assert default_socket("shop") == Path("/run/user/1000/trisup/shop.sock")


@pytest.mark.parametrize("value", [None, "", "relative/dir"])
def test_default_path_without_a_usable_runtime_dir(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    else:
        monkeypatch.setenv("XDG_RUNTIME_DIR", value)
    assert default_socket("shop") == Path(f"/tmp/trisup-{os.getuid()}/shop.sock")


def test_bind_creates_a_private_directory_and_a_0600_socket(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "app.sock"
    sock = bind_socket(path)
    try:
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert not is_live(path)  # bound, not listening yet
        sock.listen()
        assert is_live(path)
    finally:
        sock.close()


def test_a_stale_socket_is_replaced_and_a_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "run" / "app.sock"
    first = bind_socket(path)
    first.close()  # left behind, as after a kill -9: nobody answers
    assert path.exists()
    second = bind_socket(path)
    try:
        second.listen()
        with pytest.raises(SocketError, match="another trisup instance is serving"):
            bind_socket(path)
        assert is_live(path)  # the refused attempt took nothing from the live one
    finally:
        second.close()


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)
    path = directory / "app.sock"
    path.write_text("precious")
    with pytest.raises(SocketError, match=r"app\.sock: exists and is not a socket"):
        bind_socket(path)
    assert path.read_text() == "precious"


def test_a_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    directory.mkdir()
    directory.chmod(0o777)
    with pytest.raises(SocketError, match=r"writable by others \(mode 0777\); chmod 0700"):
        bind_socket(directory / "app.sock")
    assert not (directory / "app.sock").exists()


def test_a_path_whose_directory_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("")
    with pytest.raises(SocketError, match="cannot create the socket's directory"):
        bind_socket(tmp_path / "run" / "app.sock")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory away")
def test_a_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    with pytest.raises(SocketError, match="owned by uid 65534, not by this user"):
        bind_socket(directory / "app.sock")


def test_is_live_is_false_for_a_missing_path(tmp_path: Path) -> None:
    assert not is_live(tmp_path / "nothing.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(os.fspath(tmp_path / "s.sock"))
        server.listen()
        assert is_live(tmp_path / "s.sock")
