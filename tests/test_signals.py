"""The one signal path of ``trisup run`` and ``Manager.run``, with real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

PY = json.dumps(sys.executable)

# A child that exits at once on SIGTERM: the shutdown is over within milliseconds, so
# a second SIGTERM sent just after the first lands around its end.
QUICK = f"""
[manager]
name = "app"

[services.w]
command = [{PY}, "-c", "import time; print('up', flush=True); time.sleep(60)"]
ready_pattern = "up"
"""


def _run_twice_signalled(path: Path, gap: float) -> tuple[int, str, str]:
    """`trisup run --no-live`, SIGTERM once it runs, SIGTERM again *gap* s later."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trisup", "run", "--no-live", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        head: list[str] = []
        for line in proc.stdout:
            head.append(line)
            if "new=running" in line:
                break
        proc.send_signal(signal.SIGTERM)
        time.sleep(gap)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, "".join(head) + out, err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_second_sigterm_never_outlives_the_shutdown(tmp_path: Path) -> None:
    """20 runs, a second SIGTERM 0 to 20 ms after the first: exit 0 each time, no trace."""
    path = tmp_path / "services.toml"
    path.write_text(textwrap.dedent(QUICK))
    codes: list[int] = []
    for run in range(20):
        code, out, err = _run_twice_signalled(path, (run % 5) * 0.005)
        codes.append(code)
        assert "Traceback" not in err, err
        assert 'signal=SIGTERM msg="received SIGTERM, shutting down gracefully' in out
        assert "event=manager_stopped" in out
    assert codes == [0] * 20


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_signal_re_raised_as_the_receiver_closes_is_only_noted() -> None:
    """What the receiver re-raises on closing lands in a handler that notes it; restored after."""
    import trio
    import trio.testing

    from trisup._background import _absorb_late  # pyright: ignore[reportPrivateUsage]

    noted: list[str] = []

    async def main() -> None:
        with _absorb_late(noted.append), trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT):
            signal.raise_signal(signal.SIGTERM)  # pending in the receiver: re-raised on closing
            signal.raise_signal(signal.SIGINT)
            await trio.testing.wait_all_tasks_blocked()  # trio has queued both to the receiver

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    trio.run(main)
    assert sorted(noted) == ["SIGINT", "SIGTERM"]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_sigterm_after_the_manager_stopped_is_absorbed(tmp_path: Path) -> None:
    """While the control plane winds down after the manager stopped, SIGTERM is only noted."""
    path = tmp_path / "services.toml"
    path.write_text(textwrap.dedent(QUICK))
    for _ in range(10):
        proc = subprocess.Popen(
            [sys.executable, "-m", "trisup", "run", "--no-live", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        watchdog = threading.Timer(30, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if "new=running" in line:
                    proc.send_signal(signal.SIGTERM)
                if "event=manager_stopped" in line:
                    proc.send_signal(signal.SIGTERM)  # the socket is still being closed
                    break
            _, err = proc.communicate(timeout=30)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
