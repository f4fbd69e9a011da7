"""The stderr lines that say why a child failed: the pure rule, then real child processes."""

from __future__ import annotations

import sys
import textwrap

import pytest
import trio

import trisup
from trisup import RestartPolicy, ServiceConfig, ServiceStatus
from trisup._health import api_dict, error_text
from trisup._stderr import KEPT, LINE_CHARS, SHOWN, StderrTail, lines_that_matter
from trisup.process import ProcessExited, ProcessService

NEVER = ServiceConfig(restart_policy=RestartPolicy.NEVER)
LIMIT = 15  # seconds; every body with a child process is bounded by this

POSTGRES_ROOT = [
    '"root" execution of the PostgreSQL server is not permitted.',
    "The server must be started under an unprivileged user ID to prevent",
    "possible system security compromise.  See the documentation for",
    "more information on how to properly start the server.",
]
FATAL = '2026-12-05 10:00:00.001 UTC [42] FATAL:  data directory "/x" has wrong ownership'
HINT = (
    "2026-12-05 10:00:00.001 UTC [42] HINT:  The server must be started by the user that"
    " owns the data directory."
)
POSTGRES_FATAL = [
    "2026-12-05 10:00:00.000 UTC [42] LOG:  starting PostgreSQL 16.2",
    FATAL,
    HINT,
    "2026-12-05 10:00:00.002 UTC [42] LOG:  database system is shut down",
]
GO_PANIC = [
    "2026/12/05 10:00:00 listening on :8080",
    "panic: runtime error: invalid memory address or nil pointer dereference",
    "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x47f2a1]",
    "",
    "goroutine 1 [running]:",
    "main.main()",
    "\t/home/app/main.go:12 +0x21",
    "panic({0x45e2a0?, 0x4b0ab8?})",
    "\t/usr/lib/go/src/runtime/panic.go:770 +0x132",
    "exit status 2",
]
PY_TRACEBACK = [
    "ERROR: config reload failed, retrying",
    "Traceback (most recent call last):",
    '  File "/srv/app/main.py", line 3, in <module>',
    '    raise ValueError("bad port: 0")',
    'ValueError: bad port: 0 (from "listen")',
]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param(POSTGRES_ROOT, POSTGRES_ROOT, id="several-lines-no-marker"),
        pytest.param(POSTGRES_FATAL, [FATAL, HINT], id="fatal-and-its-hint"),
        pytest.param(
            GO_PANIC,
            ["panic: runtime error: invalid memory address or nil pointer dereference"],
            id="go-panic",
        ),
        pytest.param(PY_TRACEBACK, ['ValueError: bad port: 0 (from "listen")'], id="traceback"),
        pytest.param(
            [
                "Traceback (most recent call last):",
                '  File "a.py", line 1, in <module>',
                "KeyError: 'x'",
                "",
                "During handling of the above exception, another exception occurred:",
                "",
                "Traceback (most recent call last):",
                '  File "a.py", line 3, in <module>',
                "    sys.exit(load())",
                "myapp.errors.ConfigMissing: /etc/shop/credentials.json",
            ],
            ["myapp.errors.ConfigMissing: /etc/shop/credentials.json"],
            id="chained-traceback-final-line",
        ),
        pytest.param(
            [
                "Traceback (most recent call last):",
                '  File "/srv/app/main.py", line 9, in <module>',
                "    raise",
                "RuntimeError: No active exception to reraise",
            ],
            ["RuntimeError: No active exception to reraise"],
            id="traceback-source-line-bare-raise",
        ),
        pytest.param(
            [
                'Exception in thread "main" java.lang.IllegalStateException: no config',
                "\tat com.shop.ErrorHandler.handle(ErrorHandler.java:12)",
                "\tat com.shop.Main.main(Main.java:5)",
                "Caused by: java.io.FileNotFoundException: /etc/shop/app.conf",
                "\tat java.base/java.io.FileInputStream.open0(Native Method)",
            ],
            [
                'Exception in thread "main" java.lang.IllegalStateException: no config',
                "Caused by: java.io.FileNotFoundException: /etc/shop/app.conf",
            ],
            id="java-frames-are-not-error-lines",
        ),
        pytest.param(
            ["warming up", "ERROR: cannot bind :80", "retrying", "ERROR: cannot bind :80", "bye"],
            ["ERROR: cannot bind :80", "ERROR: cannot bind :80"],
            id="error-lines",
        ),
        pytest.param(
            ["ERROR: a query failed", "FATAL:  the disk is full", "LOG:  shut down"],
            ["FATAL:  the disk is full"],
            id="the-most-severe-kind",
        ),
        pytest.param(
            [f"ERROR {i}" for i in range(9)],
            [f"ERROR {i}" for i in range(5, 9)],
            id="the-last-error-lines",
        ),
        pytest.param(["a", "  ", "b", "c", "d", "e", ""], ["b", "c", "d", "e"], id="last-lines"),
        pytest.param(["x" * 500], ["x" * (LINE_CHARS - 1) + "…"], id="cut"),
        pytest.param([], [], id="nothing"),
    ],
)
def test_lines_that_matter(lines: list[str], expected: list[str]) -> None:
    """Each kind of stderr gives the lines that say why, at most SHOWN, each cut."""
    assert lines_that_matter(lines) == expected
    assert len(expected) <= SHOWN


def test_the_tail_keeps_the_last_non_blank_lines_of_every_batch() -> None:
    """A batch keeps its last KEPT lines, blank ones skipped; the tail holds KEPT at most."""
    tail = StderrTail()
    tail.add([b"first", b"   ", b"  caf\xc3\xa9 \xff\r"])
    assert tail.lines() == ["first", "  café \ufffd"]  # indentation kept: it tells frames
    tail.add([str(i).encode() for i in range(100)])
    assert tail.lines() == [str(i) for i in range(100 - KEPT, 100)]


def sh(*lines: str, stdout: str = "", code: int = 1) -> list[str]:
    """A shell program writing *lines* on stderr (and *stdout* on stdout), exiting *code*."""
    script = "".join(f"printf '%s\\n' {_quote(line)} >&2\n" for line in lines)
    if stdout:
        script += f"for i in $(seq 200); do printf '%s\\n' {_quote(stdout)}; done\n"
    return ["/bin/sh", "-c", script + f"exit {code}"]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


async def _fail(argv: list[str]) -> trisup.ServiceInfo:
    """Serve *argv* as a process once; return its info once it failed."""
    m = trisup.Manager("test")
    m.add_with_config(ProcessService("db", argv), NEVER)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            await m.wait_status("db", ServiceStatus.FAILED)
            nursery.cancel_scope.cancel()
    return m.get_service_info("db")


async def test_postgres_refusing_root_says_all_four_lines() -> None:
    """PostgreSQL's four-line refusal reaches the message whole, not its last line only."""
    info = await _fail(sh(*POSTGRES_ROOT))
    error = info.error
    assert isinstance(error, ProcessExited)
    assert error.stderr == "\n".join(POSTGRES_ROOT)
    message = "exited with code 1; stderr: " + " | ".join(POSTGRES_ROOT)
    assert info.metric.last_error == message
    assert error_text(info) == "ProcessExited: " + message
    assert api_dict(info)["last_error_type"] == "ProcessExited"


async def test_a_fatal_line_and_its_hint_without_the_noise() -> None:
    """A FATAL line and the HINT after it are the message; LOG lines and stdout are not."""
    info = await _fail(sh(*POSTGRES_FATAL, stdout="LOG: stdout noise ERROR"))
    assert info.metric.last_error == f"exited with code 1; stderr: {FATAL} | {HINT}"


async def test_a_go_panic_gives_its_panic_line() -> None:
    """A Go-style panic names the panic, not the goroutine's frames or "exit status 2"."""
    info = await _fail(sh(*GO_PANIC, code=2))
    assert info.metric.last_error == (
        "exited with code 2; stderr: "
        "panic: runtime error: invalid memory address or nil pointer dereference"
    )


async def test_a_python_traceback_gives_its_exception_line() -> None:
    """A real Python child's traceback gives its final exception line."""
    code = textwrap.dedent(
        """
        import json, sys
        print("ERROR: config reload failed, retrying", file=sys.stderr)
        print("ERROR in stdout must not count")
        json.loads("{")
        """
    )
    info = await _fail([sys.executable, "-c", code])
    assert info.metric.last_error == (
        "exited with code 1; stderr: json.decoder.JSONDecodeError: Expecting property name"
        " enclosed in double quotes: line 1 column 2 (char 1)"
    )


async def test_stdout_never_makes_the_message() -> None:
    """A child that writes only on stdout, error-looking lines included, fails with no stderr."""
    info = await _fail(sh(stdout="FATAL: not on stderr"))
    error = info.error
    assert isinstance(error, ProcessExited)
    assert (error.stderr, info.metric.last_error) == ("", "exited with code 1")


async def test_only_the_last_lines_are_kept() -> None:
    """An error line followed by more than KEPT lines is gone: the last lines speak."""
    tail = [f"line {i}" for i in range(KEPT + 5)]
    info = await _fail(sh("FATAL: too early to be seen", *tail))
    assert info.metric.last_error == "exited with code 1; stderr: " + " | ".join(tail[-SHOWN:])


def test_the_message_is_bounded() -> None:
    """ProcessExited's message carries at most 800 characters of stderr, cut with an ellipsis."""
    error = ProcessExited("db", 1, "\n".join(["y" * 300] * 4))
    assert error.stderr == "\n".join(["y" * 300] * 4)
    head = "exited with code 1; stderr: "
    assert str(error).startswith(head) and str(error).endswith("…")
    assert len(str(error)) == len(head) + 800
