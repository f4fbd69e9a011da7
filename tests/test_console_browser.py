"""The console page in a real browser: Debian's Chromium, driven by Playwright.

Skipped when Chromium or Playwright is missing, except on CI (``$CI`` set), where
that is a failure: CI installs both. The screenshot for the docs is written to
``docs/console.png`` when that file is missing or ``$TRISUP_SCREENSHOT`` is set.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
import trio

import trisup
import trisup.http
from trisup import RestartPolicy, ServiceStatus
from trisup.http import ConsoleService

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Dialog, Page, Route

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
STATIC = Path(trisup.http.__file__).resolve().parent / "static"


def _new_page(owner: Browser | BrowserContext, width: int = 1500, height: int = 560) -> Page:
    """A page; while the details panel's files are not in the package, they answer empty.

    The page loads ``static/details.js`` and ``details.css`` and falls back to the raw
    JSON when ``window.TrisupDetails`` is missing, which is what runs then.
    """
    page = owner.new_page()
    page.set_viewport_size({"width": width, "height": height})
    if not (STATIC / "details.js").exists():
        for name, kind in (("details.js", "text/javascript"), ("details.css", "text/css")):
            page.route(f"**/static/{name}", partial(_fulfil_empty, kind))
    return page


def _fulfil_empty(kind: str, route: Route) -> None:
    route.fulfill(status=200, content_type=kind, body="")


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
    details_url: str = ""
    headers: list[str] = field(default_factory=list[str])
    phases: dict[str, str] = field(default_factory=dict[str, str])
    delays: dict[str, str] = field(default_factory=dict[str, str])
    ticks: list[str] = field(default_factory=list[str])
    tip: str = ""
    uptime_title: str = ""
    error: str = ""
    error_title: str = ""


def _drive(url: str, shot: Path, add_odd: partial[None]) -> Seen:
    """In a worker thread: load the page, stop the crashing service, take a screenshot."""
    from playwright.sync_api import expect, sync_playwright

    seen = Seen()
    requested = seen.requested
    problems = seen.problems
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = _new_page(browser)
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on(
                "console",
                lambda msg: problems.append(msg.text) if msg.type == "error" else None,
            )
            page.goto(url)
            rows = page.locator("#rows tr.service")
            expect(rows).to_have_count(7)
            expect(page.locator("#connection")).to_have_text("live")
            expect(page.locator("#manager-state")).to_have_text("serving")
            seen.headers = page.locator("#services th").all_inner_texts()
            flappy = page.locator('#rows tr[data-service="flappy"]')
            expect(flappy).to_have_attribute("data-status", "crashing", timeout=10_000)
            expect(page.locator('#rows tr[data-service="cache"]')).to_have_attribute(
                "data-status", "failed", timeout=10_000
            )
            page.wait_for_timeout(400)  # a re-sort follows within ORDER_EVERY
            seen.names = page.locator("#rows td.col-name").all_inner_texts()
            # the phase comes from the server's phase events, never guessed by the page
            expect(flappy).to_have_attribute("data-phase", "backoff", timeout=10_000)
            expect(flappy.locator(".phase")).to_have_text("backoff")
            expect(flappy.locator(".status")).to_have_text("crashing")
            seen.delays["flappy"] = flappy.locator("td.col-delay").inner_text()
            seen.delays["worker"] = page.locator(
                '#rows tr[data-service="worker"] td.col-delay'
            ).inner_text()
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
            seen.ticks = page.locator("#axis .tick").all_inner_texts()
            strip = flappy.locator("canvas")
            box = strip.bounding_box()
            assert box is not None
            strip.hover(position={"x": box["width"] - 3, "y": 5})  # the latest phase
            expect(page.locator("#tip")).to_be_visible()
            seen.tip = page.locator("#tip").inner_text()
            seen.uptime_title = page.locator(
                '#rows tr[data-service="worker"] td.col-uptime'
            ).get_attribute("title") or ""
            cache = page.locator('#rows tr[data-service="cache"] td.col-error')
            seen.error, seen.error_title = cache.inner_text(), cache.get_attribute("title") or ""
            page.evaluate("window.loadedOnce = true")
            page.screenshot(path=str(shot), full_page=True)
            flappy.locator('button[data-action="stop"]').click()
            expect(flappy).to_have_attribute("data-status", "stopped", timeout=10_000)
            expect(flappy.locator(".status")).to_have_text("stopped")
            expect(flappy.locator(".phase")).to_have_text("stopped")  # held: one word
            expect(flappy.locator('button[data-action="start"]')).to_be_visible()
            expect(page.locator("#messages li").first).to_have_attribute(
                "data-text", "service stopped, name=flappy"
            )
            seen.reloaded = not page.evaluate("window.loadedOnce === true")
            add_odd()
            odd = page.locator("#rows tr.service").filter(has_text="odd")
            expect(odd).to_have_count(1)
            seen.odd_name = odd.locator("td.col-name").inner_text()
            seen.markup = page.locator("#rows b").count()
            page.locator('#rows tr[data-service="worker"] button[data-action="details"]').click()
            expect(page.locator("#rows tr.details")).to_have_count(1)
            seen.details_url = page.evaluate("location.search")
            seen.details = page.locator("#rows tr.details").inner_text()
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
    # problems first: failed, crashing, then the rest by name
    assert result.names == ["cache", "flappy", "api", "batch", "console", "reports", "worker"]
    assert result.headers[:3] == ["Service", "Phase", "Status"]
    # the delay shows only while a service backs off
    assert result.delays == {"flappy": "300ms", "worker": ""}
    assert result.ticks[-1] == "now"
    assert len(result.ticks) >= 2
    assert re.fullmatch(r"-\d+[sm]", result.ticks[0]), result.ticks
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d–(\d\d:\d\d:\d\d|now) \w+ \(\d+(\.\d)? s\)", result.tip
    ), result.tip
    assert re.fullmatch(r"up since \d\d:\d\d:\d\d", result.uptime_title), result.uptime_title
    assert "config file /etc/app/cache.toml not found" in result.error
    assert result.error_title.startswith(result.error + "\nat ")
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
    assert "worker" in result.details
    assert result.details_url == "?detail=worker"
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
            page = _new_page(context)
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
            message = page.locator("#messages li").first
            expect(message).to_have_attribute("data-text", re.compile("."), timeout=10_000)
            notice = message.get_attribute("data-text") or ""
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


# ------------------------------------------------------------ the operator's page

_T = TypeVar("_T")


async def _serve(m: trisup.Manager, console: ConsoleService, drive: Callable[[str], _T]) -> _T:
    """Serve *m*, run *drive* with the page's URL in a worker thread, then stop."""
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            assert console.url is not None
            result = await trio.to_thread.run_sync(drive, console.url)
            nursery.cancel_scope.cancel()
    return result


@contextmanager
def _chromium(problems: list[str]) -> Iterator[Browser]:
    """Chromium, closed on exit; every page error lands in *problems* (see `_watch`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def _watch(page: Page, problems: list[str]) -> Page:
    page.on("pageerror", lambda error: problems.append(str(error)))
    return page


def _shown(page: Page) -> list[str]:
    """The names of the service rows on show, in order."""
    return page.locator("#rows tr.service:not([hidden]) td.col-name").all_inner_texts()


LONG = "payments-reconciliation-worker-for-the-eu-region"


@dataclass
class Found:
    """What the find test saw."""

    failing: list[str] = field(default_factory=list[str])
    pressed: str = ""
    url_failing: str = ""
    after_again: int = 0
    searched: list[str] = field(default_factory=list[str])
    sorted_names: list[str] = field(default_factory=list[str])
    sorted_restarts: list[int] = field(default_factory=list[int])
    aria: str = ""
    url_sorted: str = ""
    linked: list[str] = field(default_factory=list[str])
    linked_search: str = ""
    linked_pressed: str = ""
    linked_aria: str = ""
    widths: list[int] = field(default_factory=list[int])
    long_title: str = ""
    long_lines: int = 0
    long_style: str = ""
    problems: list[str] = field(default_factory=list[str])


def _drive_find(url: str) -> Found:
    """Filter by a card, search, sort by a column, reload from the URL, then go 900 px wide."""
    from playwright.sync_api import expect

    seen = Found()
    with _chromium(seen.problems) as browser:
        page = _watch(_new_page(browser), seen.problems)
        page.goto(url)
        expect(page.locator("#rows tr.service")).to_have_count(8)
        expect(page.locator('#rows tr[data-service="cache"]')).to_have_attribute(
            "data-status", "failed", timeout=10_000
        )
        expect(page.locator('#rows tr[data-service="flappy"]')).to_have_attribute(
            "data-status", "crashing", timeout=10_000
        )
        failing = page.locator('#cards .card[data-filter="failing"]')
        failing.click()
        seen.failing = sorted(_shown(page))
        seen.pressed = failing.get_attribute("aria-pressed") or ""
        seen.url_failing = page.evaluate("location.search")
        failing.click()
        seen.after_again = len(_shown(page))
        page.locator("#search").fill("DB")
        seen.searched = _shown(page)
        page.locator("#search").fill("")
        page.locator('th[data-sort="restarts"] button').click()
        seen.sorted_names = _shown(page)
        seen.sorted_restarts = [
            int(t) for t in page.locator("#rows tr.service td.col-restarts").all_inner_texts()
        ]
        seen.aria = page.locator('th[data-sort="restarts"]').get_attribute("aria-sort") or ""
        seen.url_sorted = page.evaluate("location.search")

        linked = _watch(_new_page(browser), seen.problems)
        linked.goto(url + "?filter=failing&q=FL&sort=name&dir=desc")
        expect(linked.locator("#rows tr.service")).to_have_count(8)
        expect(linked.locator('#rows tr[data-service="flappy"]')).to_have_attribute(
            "data-status", "crashing", timeout=10_000
        )
        seen.linked = _shown(linked)
        seen.linked_search = linked.locator("#search").input_value()
        seen.linked_pressed = (
            linked.locator('#cards .card[data-filter="failing"]').get_attribute("aria-pressed")
            or ""
        )
        seen.linked_aria = linked.locator('th[data-sort="name"]').get_attribute("aria-sort") or ""

        page.set_viewport_size({"width": 900, "height": 700})
        page.wait_for_timeout(300)
        seen.widths = page.evaluate(
            """() => {
              const doc = document.scrollingElement, table = document.getElementById('services');
              return [doc.scrollWidth, doc.clientWidth, table.scrollWidth, table.clientWidth];
            }"""
        )
        cell = page.locator(f'#rows tr[data-service="{LONG}"] td.col-name')
        seen.long_title = cell.get_attribute("title") or ""
        heights = [
            page.locator(f'#rows tr[data-service="{name}"] td.col-name .label').evaluate(
                "n => n.getBoundingClientRect().height"
            )
            for name in (LONG, "db")
        ]
        seen.long_lines = round(heights[0] / heights[1])
        seen.long_style = cell.evaluate(
            "n => { const s = getComputedStyle(n); return s.whiteSpace + ' ' + s.wordBreak; }"
        )
    return seen


async def test_console_find_in_chromium() -> None:
    """Cards filter, the search box and the column sort narrow the table; the URL keeps the view."""
    _require_browser()
    m = trisup.Manager("shop")
    for name in ("db", "db-replica", "api", "web", LONG):
        m.add(trisup.new_service(name, trio.sleep_forever))
    m.add(
        trisup.new_service("flappy", _flap),
        restart_delay=0.05,
        backoff_multiplier=1,
        max_restarts_in_window=0,
    )
    m.add(trisup.new_service("cache", _broken), max_restarts=2, restart_delay=0.25)
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    seen = await _serve(m, console, _drive_find)
    assert seen.problems == []
    assert seen.failing == ["cache", "flappy"]
    assert seen.pressed == "true"
    assert seen.url_failing == "?filter=failing"
    assert seen.after_again == 8
    assert seen.searched == ["db", "db-replica"]
    assert seen.aria == "descending"
    assert seen.url_sorted == "?sort=restarts&dir=desc"
    assert seen.sorted_restarts == sorted(seen.sorted_restarts, reverse=True)
    assert seen.sorted_restarts[0] > 0
    rest = ["api", "console", "db", "db-replica", LONG, "web"]
    assert seen.sorted_names[2:] == rest  # ties by name
    assert seen.linked == ["flappy"]
    assert seen.linked_search == "FL"
    assert seen.linked_pressed == "true"
    assert seen.linked_aria == "descending"
    doc_scroll, doc_client, table_scroll, table_client = seen.widths
    assert doc_scroll <= doc_client, seen.widths
    assert table_scroll <= table_client, seen.widths
    assert seen.long_title == LONG
    assert seen.long_lines == 1  # cut with an ellipsis, never broken mid-word
    assert seen.long_style == "nowrap keep-all"
