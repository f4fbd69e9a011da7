"""``trisup check`` refuses what can never spawn: names, NUL bytes, programs, nesting."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import trisup
from trisup._tomlconfig import ConfigError, Plan, parse_config

NOT_A_NAME = "not a variable name (empty, or holds '=' or a NUL byte)"


def parse(text: str, base_dir: Path) -> Plan:
    return parse_config(textwrap.dedent(text), file="f.toml", base_dir=base_dir)


@pytest.mark.parametrize(
    ("service", "message"),
    [
        (
            'command = "true"\nenv = { "" = "x" }',
            f"f.toml: [services.a.env] '': {NOT_A_NAME}",
        ),
        (
            'command = "true"\nenv = { "A=B" = "x" }',
            f"f.toml: [services.a.env] 'A=B': {NOT_A_NAME}",
        ),
        (
            'command = "true"\nenv = { "A\\u0000" = "x" }',
            f"f.toml: [services.a.env] 'A\\x00': {NOT_A_NAME}",
        ),
        (
            'command = "true"\nenv = { A = "x\\u0000y" }',
            "f.toml: [services.a.env] A: holds a NUL byte",
        ),
        ('argv = ["true", "a\\u0000b"]', "f.toml: [services.a] argv[1]: holds a NUL byte"),
        ('command = "tr\\u0000ue"', "f.toml: [services.a] command: holds a NUL byte"),
    ],
)
def test_env_names_and_nul_bytes_are_errors(service: str, message: str, tmp_path: Path) -> None:
    """An env name that is empty or holds '=', a NUL byte anywhere: an error naming the key."""
    with pytest.raises(ConfigError) as caught:
        parse(f"[services.a]\n{service}\n", tmp_path)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"env": {"": "x"}}, "env name '' is not a variable name"),
        ({"env": {"A=B": "x"}}, "env name 'A=B' is not a variable name"),
        ({"env": {"A": "\0"}}, "env value of A holds a NUL byte"),
        ({"argv": ["true", "\0"]}, "argv[1] holds a NUL byte"),
    ],
)
def test_process_service_refuses_them_too(kwargs: dict[str, object], message: str) -> None:
    """`ProcessService` itself refuses what could never be passed to a child."""
    args: dict[str, object] = {"argv": ["true"], **kwargs}
    with pytest.raises(ValueError) as caught:
        trisup.ProcessService("a", **args)  # type: ignore[arg-type]  # the values under test
    assert str(caught.value).startswith(message)


def test_a_directory_or_a_file_without_x_is_an_error(tmp_path: Path) -> None:
    """A program path that is a directory or not executable can never spawn: an error."""
    (tmp_path / "bin").mkdir()
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        parse('[services.a]\ncommand = "./bin"\n', tmp_path)
    assert (
        str(caught.value)
        == f"f.toml: [services.a] command: program './bin' is a directory: {tmp_path / 'bin'}"
    )
    with pytest.raises(ConfigError) as caught:
        parse('[services.a]\nargv = ["./run.sh"]\n', tmp_path)
    assert str(caught.value) == (
        f"f.toml: [services.a] argv: program './run.sh' is not executable: {tmp_path / 'run.sh'}"
    )
    script.chmod(0o755)
    assert parse('[services.a]\ncommand = "./run.sh"\n', tmp_path).warnings == ()


def test_a_missing_program_stays_a_warning(tmp_path: Path) -> None:
    """A program not there may be by `run`: a warning, not an error."""
    plan = parse(
        '[services.a]\ncommand = "./later"\n[services.b]\ncommand = "no-such-program-x"\n', tmp_path
    )
    assert plan.warnings == (
        "[services.a] program './later' not found",
        "[services.b] program 'no-such-program-x' not found",
    )


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX PATH and modes")
def test_a_program_on_path_that_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name found on PATH only as a directory or a file without x: an error naming it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tool").write_text("#!/bin/sh\n")
    (bin_dir / "tool").chmod(0o644)
    (bin_dir / "folder").mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ConfigError) as caught:
        parse('[services.a]\ncommand = "tool --flag"\n', tmp_path)
    assert str(caught.value) == (
        f"f.toml: [services.a] command: program 'tool' is found on PATH only as"
        f" {bin_dir / 'tool'}, not executable"
    )
    with pytest.raises(ConfigError) as caught:
        parse('[services.a]\ncommand = "folder"\n', tmp_path)
    assert str(caught.value).endswith(f"only as {bin_dir / 'folder'}, a directory")


@pytest.mark.parametrize("nest", ["[" * 5000 + "]" * 5000, "{ a = " * 5000 + "1" + " }" * 5000])
def test_a_deeply_nested_document_is_a_clear_error(nest: str, tmp_path: Path) -> None:
    """Nesting past the parser's recursion: a ConfigError, not a RecursionError traceback."""
    with pytest.raises(ConfigError) as caught:
        parse(f"x = {nest}\n", tmp_path)
    assert str(caught.value) == "f.toml: invalid TOML: nested too deeply"
