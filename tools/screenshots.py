"""Screenshots of the console for docs/console.md, taken in Debian's Chromium.

Starts a real `Manager` with a `ConsoleService` on a free port, opens the page in
Chromium (Playwright with ``executable_path``, 1280×800), waits for a steady view
and writes:

- ``docs/console-8.png``: 8 services, a mix: running, crashing, backing off, failed,
  a crash-looping child process and a nested manager;
- ``docs/console-details.png``: the details panel of that child process;
- ``docs/console-200-failing.png``: 200 services, 40 of them failing, with the
  page's ``?filter=failing`` on.

Run: ``python tools/screenshots.py [--out docs]`` (needs the ``http`` extra,
``playwright`` and ``/usr/bin/chromium``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import trio

import trisup
from trisup import RestartPolicy
from trisup.http import ConsoleService
from trisup.process import ProcessService

if TYPE_CHECKING:
    from playwright.sync_api import Page, ViewportSize

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
SETTLE_MS = 4000  # lets the timeline strips show a few restarts
DB_CRASH = (
    "echo database system is starting up; "
    "echo FATAL: could not open file /etc/shop/db.conf: No such file or directory >&2; "
    "echo HINT: see the documentation for how to start the server. >&2; "
    "sleep 2; exit 1"
)


# --------------------------------------------------------------- the services


async def _ready_after(delay: float, *, task_status: trio.TaskStatus[None]) -> None:
    await trio.sleep(delay)
    task_status.started()
    await trio.sleep_forever()


async def _refused_after(delay: float) -> None:
    await trio.sleep(delay)
    raise ConnectionError("upstream refused the connection")


async def _missing_file() -> None:
    raise FileNotFoundError(2, "No such file or directory", "/etc/shop/credentials.json")


async def _batch() -> None:
    await trio.sleep(0.5)


def eight() -> tuple[trisup.Manager, ConsoleService]:
    """8 services: running, crashing, backing off, failed, a process, a nested manager."""
    m = trisup.Manager("shop")
    m.add(trisup.new_service("api", _ready_after, 0.5))
    m.add(trisup.new_service("worker", trio.sleep_forever))
    m.add(
        trisup.new_service("payments", _refused_after, 0.5),
        restart_delay=0.5,
        backoff_multiplier=1,
        max_restarts_in_window=0,
    )
    m.add(trisup.new_service("mailer", _refused_after, 0.25), restart_delay=30)
    m.add(trisup.new_service("credentials", _missing_file), max_restarts=2, restart_delay=0.25)
    m.add(
        ProcessService("postgres", ["sh", "-c", DB_CRASH]),
        restart_delay=2,
        backoff_multiplier=1,
        max_restarts_in_window=0,
    )
    jobs = trisup.Manager("jobs")
    jobs.add(trisup.new_service("scheduler", trio.sleep_forever))
    jobs.add(trisup.new_service("nightly", _batch), restart_policy=RestartPolicy.ON_FAILURE)
    m.add(jobs)
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    return m, console


KINDS = ("api", "web", "worker", "cache", "queue", "search", "billing", "mailer")


def two_hundred() -> tuple[trisup.Manager, ConsoleService]:
    """200 services, 40 failing: 25 crash-looping, 15 failed for good."""
    m = trisup.Manager("fleet")
    for i in range(199):
        name = f"{KINDS[i % len(KINDS)]}-{i // len(KINDS) + 1:02d}"
        if i % 5 == 2 and i < 125:  # 25 crash-looping
            m.add(
                trisup.new_service(name, _refused_after, 0.5 + (i % 7) / 10),
                restart_delay=1,
                backoff_multiplier=1.5,
                max_restarts_in_window=0,
            )
        elif i % 5 == 4 and i < 75:  # 15 failed
            m.add(trisup.new_service(name, _missing_file), max_restarts=1, restart_delay=0.25)
        else:
            m.add(trisup.new_service(name, trio.sleep_forever))
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    return m, console


# ---------------------------------------------------------------- the browser


def _shoot_eight(page: Page, url: str, out: Path) -> list[Path]:
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
    page.wait_for_function(
        "() => Number(document.getElementById('card-failing').textContent) >= 3", timeout=20_000
    )
    page.wait_for_timeout(SETTLE_MS)
    shots = [out / "console-8.png"]
    page.screenshot(path=str(shots[0]))
    page.goto(url + "?detail=postgres")
    panel = page.locator(".tsd-panel")
    try:
        expect(panel.locator(".tsd-line").first).to_be_visible(timeout=10_000)
    except AssertionError:
        print("the page does not open ?detail=NAME: no details screenshot", file=sys.stderr)
        return shots
    expect(panel.locator(".tsd-exit")).to_be_visible(timeout=10_000)  # while it backs off
    shots.append(out / "console-details.png")
    panel.screenshot(path=str(shots[1]))
    return shots


def _shoot_two_hundred(page: Page, url: str, out: Path) -> list[Path]:
    from playwright.sync_api import expect

    page.goto(url + "?filter=failing")
    expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
    page.wait_for_function(
        "() => Number(document.getElementById('card-failing').textContent) >= 40", timeout=30_000
    )
    page.wait_for_timeout(SETTLE_MS)
    shot = out / "console-200-failing.png"
    page.screenshot(path=str(shot))
    return [shot]


def _browse(url: str, out: Path, shoot: Callable[[Page, str, Path], list[Path]]) -> list[Path]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("pageerror", lambda error: print(f"page error: {error}", file=sys.stderr))
            return shoot(page, url, out)
        finally:
            browser.close()


async def _run(
    build: Callable[[], tuple[trisup.Manager, ConsoleService]],
    shoot: Callable[[Page, str, Path], list[Path]],
    out: Path,
) -> list[Path]:
    m, console = build()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            assert console.url is not None
            shots = await trio.to_thread.run_sync(_browse, console.url, out, shoot)
            nursery.cancel_scope.cancel()
    return shots


async def _main(out: Path) -> None:
    for build, shoot in ((eight, _shoot_eight), (two_hundred, _shoot_two_hundred)):
        for shot in await _run(build, shoot, out):
            print(f"wrote {shot}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Screenshots of the console for the docs.")
    default = Path(__file__).resolve().parent.parent / "docs"
    parser.add_argument("--out", type=Path, default=default, help="folder (default: docs/)")
    args = parser.parse_args()
    out: Path = args.out
    if not out.is_dir():
        parser.error(f"--out {out}: no such folder")
    logging.getLogger("trisup").setLevel(logging.CRITICAL)  # the failures are on purpose
    trio.run(_main, out)


if __name__ == "__main__":
    main()
