"""The console page in a real browser: Debian's Chromium, driven by Playwright.

Skipped when Chromium or Playwright is missing, except on CI (``$CI`` set), where
that is a failure: CI installs both. The screenshot for the docs is written to
``docs/console.png`` when that file is missing or ``$TRISUP_SCREENSHOT`` is set.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

import trisup
from trisup import RestartPolicy, ServiceStatus
from trisup.http import ConsoleService

if TYPE_CHECKING:
    from playwright.sync_api import Dialog

S = ServiceStatus
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SHOT = Path(__file__).resolve().parent.parent / "docs" / "console.png"
ODD = "<b>odd</b> & 'name'"


def _require_browser() -> None:
    """Skip without Chromium or Playwright; on CI, fail instead."""
    problem = None
    if not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        if importlib.util.find_spec("playwright") is None:
            problem = "playwright is not installed"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run on CI: {problem}")
        pytest.skip(problem)


async def _flap() -> None:
    await trio.sleep(0.4)
    raise ConnectionError("upstream refused the connection")


async def _ready_after(t: float, *, task_status: trio.TaskStatus[None]) -> None:
    await trio.sleep(t)
    task_status.started()
    await trio.sleep_forever()


async def _batch() -> None:
    await trio.sleep(0.5)


async def _broken() -> None:
    raise RuntimeError("config file /etc/app/cache.toml not found")


@dataclass
class Seen:
    """What the browser saw."""

    requested: list[str] = field(default_factory=list[str])
    problems: list[str] = field(default_factory=list[str])
    names: list[str] = field(default_factory=list[str])
    reloaded: bool = True
    odd_name: str = ""
    markup: int = -1
    details: str = ""
    headers: list[str] = field(default_factory=list[str])
    phases: dict[str, str] = field(default_factory=dict[str, str])


def _drive(url: str, shot: Path, add_odd: partial[None]) -> Seen:
    """In a worker thread: load the page, stop the crashing service, take a screenshot."""
    from playwright.sync_api import expect, sync_playwright

    seen = Seen()
    requested = seen.requested
    problems = seen.problems
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 560})
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on(
                "console",
                lambda msg: problems.append(msg.text) if msg.type == "error" else None,
            )
            page.goto(url)
            rows = page.locator("#rows tr")
            expect(rows).to_have_count(7)
            expect(page.locator("#connection")).to_have_text("live")
            expect(page.locator("#manager-state")).to_have_text("serving")
            seen.names = page.locator("#rows td.name").all_inner_texts()
            seen.headers = page.locator("#services th").all_inner_texts()
            flappy = page.locator('#rows tr[data-service="flappy"]')
            expect(flappy).to_have_attribute("data-status", "crashing", timeout=10_000)
            # the phase comes from the server's phase events, never guessed by the page
            expect(flappy).to_have_attribute("data-phase", "backoff", timeout=10_000)
            expect(flappy.locator(".phase")).to_have_text("backoff")
            expect(flappy.locator(".status")).to_have_text("crashing")
            expect(page.locator('#rows tr[data-service="cache"]')).to_have_attribute(
                "data-status", "failed"
            )
            batch = page.locator('#rows tr[data-service="batch"]')
            expect(batch).to_have_attribute("data-phase", "completed", timeout=10_000)
            for name in ("api", "worker", "cache", "reports", "batch"):
                row = page.locator(f'#rows tr[data-service="{name}"]')
                seen.phases[name] = row.locator(".phase").inner_text()
            expect(page.locator("#card-total")).to_have_text("7")
            page.wait_for_timeout(3000)  # let the timeline show a few restarts
            page.evaluate("window.loadedOnce = true")
            page.screenshot(path=str(shot), full_page=True)
            flappy.locator('button[data-action="stop"]').click()
            expect(flappy).to_have_attribute("data-status", "stopped", timeout=10_000)
            expect(flappy.locator(".status")).to_have_text("stopped")
            expect(flappy.locator(".phase")).to_have_text("stopped")  # held: one word
            expect(flappy.locator('button[data-action="start"]')).to_be_visible()
            expect(page.locator("#notice")).to_have_text("service stopped, name=flappy")
            seen.reloaded = not page.evaluate("window.loadedOnce === true")
            add_odd()
            odd = page.locator("#rows tr").filter(has_text="odd")
            expect(odd).to_have_count(1)
            seen.odd_name = odd.locator("td.name").inner_text()
            seen.markup = page.locator("#rows b").count()
            page.locator('#rows tr[data-service="worker"] button[data-action="details"]').click()
            seen.details = page.locator("#rows tr.details pre").inner_text()
        finally:
            browser.close()
    return seen


async def test_console_in_chromium(tmp_path: Path) -> None:
    """The table shows the services; a crashing service's Stop button stops it live."""
    _require_browser()
    m = trisup.Manager("shop")
    m.add(trisup.new_service("api", _ready_after, 0.5))
    m.add(trisup.new_service("worker", trio.sleep_forever))
    m.add(
        trisup.new_service("flappy", _flap),
        restart_delay=0.3,
        backoff_multiplier=1,
        max_restarts_in_window=0,
    )
    m.add(trisup.new_service("batch", _batch), restart_policy=RestartPolicy.ON_FAILURE)
    m.add(trisup.new_service("cache", _broken), max_restarts=2, restart_delay=0.25)
    m.add(trisup.new_service("reports", trio.sleep_forever), auto_start=False)
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    shot = tmp_path / "console.png"
    token = trio.lowlevel.current_trio_token()
    add_odd = partial(
        trio.from_thread.run_sync,
        partial(m.add, trisup.new_service(ODD, trio.sleep_forever)),
        trio_token=token,
    )
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            url = console.url
            assert url is not None
            result = await trio.to_thread.run_sync(_drive, url, shot, add_odd)
            assert m.get_service_info("flappy").status is S.STOPPED
            nursery.cancel_scope.cancel()
    assert result.names == ["api", "worker", "flappy", "batch", "cache", "reports", "console"]
    assert result.headers[:3] == ["Service", "Phase", "Status"]
    assert result.phases == {
        "api": "running",
        "worker": "running",
        "cache": "failed",
        "reports": "stopped",
        "batch": "completed",
    }
    origin = url.removesuffix("/debug/supervisor/")
    assert result.requested
    assert all(r.startswith(origin + "/") for r in result.requested), result.requested
    assert result.problems == []
    assert result.reloaded is False
    assert result.odd_name == ODD
    assert result.markup == 0
    assert '"name": "worker"' in result.details
    assert '"phase": "running"' in result.details
    assert shot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("TRISUP_SCREENSHOT") or not DOCS_SHOT.exists():
        shutil.copyfile(shot, DOCS_SHOT)


def _drive_with_token(url: str, token: str) -> tuple[list[str], str, list[str]]:
    """In a worker thread: open a token-protected page as a browser would, stop a service."""
    from playwright.sync_api import expect, sync_playwright

    prompts: list[str] = []
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            anonymous = browser.new_context()
            assert anonymous.request.get(url).status == 401
            context = browser.new_context(http_credentials={"username": "ops", "password": token})
            page = context.new_page()
            page.on("pageerror", lambda error: problems.append(str(error)))

            def answer(dialog: Dialog) -> None:
                prompts.append(dialog.message)
                dialog.accept(token)

            page.on("dialog", answer)
            page.goto(url)
            expect(page.locator("#connection")).to_have_text("live")
            worker = page.locator('#rows tr[data-service="worker"]')
            expect(worker).to_have_attribute("data-status", "running")
            worker.locator('button[data-action="stop"]').click()
            expect(worker).to_have_attribute("data-status", "stopped", timeout=10_000)
            # the row may turn stopped (from the event stream) before the POST answers
            expect(page.locator("#notice")).not_to_have_text("", timeout=10_000)
            notice = page.locator("#notice").inner_text()
        finally:
            browser.close()
    return prompts, notice, problems


async def test_console_with_a_token_in_chromium() -> None:
    """With a token, the browser signs in with Basic and the page asks for the token once."""
    _require_browser()
    token = "browser-test-token-0123456789"
    m = trisup.Manager("shop")
    m.add(trisup.new_service("worker", trio.sleep_forever))
    console = ConsoleService(m, bind="127.0.0.1:0", token=token)
    m.add(console)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            assert console.url is not None
            prompts, notice, problems = await trio.to_thread.run_sync(
                _drive_with_token, console.url, token
            )
            assert m.get_service_info("worker").status is S.STOPPED
            nursery.cancel_scope.cancel()
    assert prompts == ["Token for this console"]
    assert notice == "service stopped, name=worker"
    assert problems == []
