"""The console page in a real browser: Debian's Chromium, driven by Playwright.

Skipped when Chromium or Playwright is missing, except on CI (``$CI`` set), where
that is a failure: CI installs both. The screenshot for the docs is written to
``docs/console.png`` when that file is missing or ``$TRISUP_SCREENSHOT`` is set.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import socket
from collections.abc import Callable, Generator
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
    from playwright.sync_api import Browser, BrowserContext, Dialog, Locator, Page, Route

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
    delay_samples: list[list[str]] = field(default_factory=list[list[str]])
    ticks: list[str] = field(default_factory=list[str])
    tip: str = ""
    uptime_title: str = ""
    error: str = ""
    error_title: str = ""


SAMPLE_DELAYS = """async () => {
  const row = document.querySelector('#rows .service[data-service="flappy"]');
  const seen = [];
  for (let i = 0; i < 90; i++) {
    await new Promise((done) => requestAnimationFrame(done));
    seen.push([row.dataset.phase, row.querySelector(".col-delay").textContent]);
  }
  return seen;
}"""


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
            rows = page.locator("#rows .service")
            expect(rows).to_have_count(7)
            expect(page.locator("#connection")).to_have_text("live")
            expect(page.locator("#manager-state")).to_have_text("serving")
            seen.headers = page.locator("#services .head .cell").all_inner_texts()
            flappy = page.locator('#rows .service[data-service="flappy"]')
            expect(flappy).to_have_attribute("data-status", "crashing", timeout=10_000)
            expect(page.locator('#rows .service[data-service="cache"]')).to_have_attribute(
                "data-status", "failed", timeout=10_000
            )
            page.wait_for_timeout(400)  # a re-sort follows within ORDER_EVERY
            seen.names = page.locator("#rows .col-name").all_text_contents()
            # the phase comes from the server's phase events, never guessed by the page
            expect(flappy).to_have_attribute("data-phase", "backoff", timeout=10_000)
            expect(flappy.locator(".phase")).to_have_text("backoff")
            expect(flappy.locator(".status")).to_have_text("crashing")
            expect(flappy.locator(".col-delay")).to_have_text("300ms")
            seen.delays["flappy"] = "300ms"
            seen.delay_samples = page.evaluate(SAMPLE_DELAYS)
            seen.delays["worker"] = (
                page.locator('#rows .service[data-service="worker"] .col-delay').text_content()
                or ""
            )
            expect(page.locator('#rows .service[data-service="cache"]')).to_have_attribute(
                "data-status", "failed"
            )
            batch = page.locator('#rows .service[data-service="batch"]')
            expect(batch).to_have_attribute("data-phase", "completed", timeout=10_000)
            for name in ("api", "worker", "cache", "reports", "batch"):
                row = page.locator(f'#rows .service[data-service="{name}"]')
                seen.phases[name] = row.locator(".phase").text_content() or ""
            expect(page.locator("#card-total")).to_have_text("7")
            page.wait_for_timeout(3000)  # let the timeline show a few restarts
            seen.ticks = page.locator("#axis .tick").all_inner_texts()
            strip = flappy.locator("canvas")
            box = strip.bounding_box()
            assert box is not None
            strip.hover(position={"x": box["width"] - 3, "y": 5})  # the latest phase
            expect(page.locator("#tip")).to_be_visible()
            seen.tip = page.locator("#tip").inner_text()
            seen.uptime_title = (
                page.locator('#rows .service[data-service="worker"] .col-uptime').get_attribute(
                    "title"
                )
                or ""
            )
            cache = page.locator('#rows .service[data-service="cache"] .col-error')
            seen.error, seen.error_title = (
                cache.text_content() or "",
                cache.get_attribute("title") or "",
            )
            page.mouse.move(0, 0)
            expect(page.locator("#tip")).to_be_hidden()
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
            odd = page.locator("#rows .service").filter(has_text="odd")
            expect(odd).to_have_count(1)
            seen.odd_name = odd.locator(".col-name").text_content() or ""
            seen.markup = page.locator("#rows b").count()
            page.locator(
                '#rows .service[data-service="worker"] button[data-action="details"]'
            ).click()
            expect(page.locator("#rows .details")).to_have_count(1)
            seen.details_url = page.evaluate("location.search")
            seen.details = page.locator("#rows .details").text_content() or ""
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
    assert {phase for phase, _ in result.delay_samples} >= {"backoff", "running"}
    assert all((phase == "backoff") == (delay != "") for phase, delay in result.delay_samples)
    assert result.ticks[-1] == "now"
    assert len(result.ticks) >= 2
    assert re.fullmatch(r"-\d+[sm]", result.ticks[0]), result.ticks
    assert re.fullmatch(r"\d\d:\d\d:\d\d–(\d\d:\d\d:\d\d|now) \w+ \(\d+(\.\d)? s\)", result.tip), (
        result.tip
    )
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
            worker = page.locator('#rows .service[data-service="worker"]')
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
def _chromium() -> Generator[Browser]:
    """Chromium, closed on exit."""
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
    return page.locator("#rows .service:not([hidden]) .col-name").all_text_contents()


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
    with _chromium() as browser:
        page = _watch(_new_page(browser), seen.problems)
        page.goto(url)
        expect(page.locator("#rows .service")).to_have_count(8)
        expect(page.locator('#rows .service[data-service="cache"]')).to_have_attribute(
            "data-status", "failed", timeout=10_000
        )
        expect(page.locator('#rows .service[data-service="flappy"]')).to_have_attribute(
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
        page.locator('.head [data-sort="restarts"] button').click()
        seen.sorted_names = _shown(page)
        seen.sorted_restarts = [
            int(t) for t in page.locator("#rows .service .col-restarts").all_text_contents()
        ]
        seen.aria = page.locator('.head [data-sort="restarts"]').get_attribute("aria-sort") or ""
        seen.url_sorted = page.evaluate("location.search")

        linked = _watch(_new_page(browser), seen.problems)
        linked.goto(url + "?filter=failing&q=FL&sort=name&dir=desc")
        expect(linked.locator("#rows .service")).to_have_count(8)
        expect(linked.locator('#rows .service[data-service="flappy"]')).to_have_attribute(
            "data-status", "crashing", timeout=10_000
        )
        seen.linked = _shown(linked)
        seen.linked_search = linked.locator("#search").input_value()
        seen.linked_pressed = (
            linked.locator('#cards .card[data-filter="failing"]').get_attribute("aria-pressed")
            or ""
        )
        seen.linked_aria = (
            linked.locator('.head [data-sort="name"]').get_attribute("aria-sort") or ""
        )

        page.set_viewport_size({"width": 900, "height": 700})
        page.wait_for_timeout(300)
        seen.widths = page.evaluate(
            """() => {
              const doc = document.scrollingElement, table = document.getElementById('services');
              return [doc.scrollWidth, doc.clientWidth, table.scrollWidth, table.clientWidth];
            }"""
        )
        cell = page.locator(f'#rows .service[data-service="{LONG}"] .col-name')
        seen.long_title = cell.get_attribute("title") or ""
        heights = [
            page.locator(f'#rows .service[data-service="{name}"] .col-name .label').evaluate(
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _stubborn() -> None:
    try:
        await trio.sleep_forever()
    finally:
        with trio.move_on_after(1.5, shield=True):
            await trio.sleep_forever()


@dataclass
class Honest:
    """What the disconnected test saw."""

    messages: list[str] = field(default_factory=list[str])
    classes: str = ""
    banner: str = ""
    opacity: float = 1.0
    enabled_offline: int = -1
    restart_all_offline: bool = False
    rows_back: list[str] = field(default_factory=list[str])
    enabled_back: int = -1
    banner_back: bool = False
    problems: list[str] = field(default_factory=list[str])


def _drive_honest(url: str, control: Callable[[str, str], None]) -> Honest:
    """Act (one success, one failure), stop the console under the page, then start it again."""
    from playwright.sync_api import expect

    seen = Honest()
    actions = "#rows button.action:not([data-action=details])"
    with _chromium() as browser:
        page = _watch(_new_page(browser), seen.problems)
        page.goto(url)
        expect(page.locator("#connection")).to_have_text("live")
        expect(page.locator("#rows .service")).to_have_count(4)
        worker = page.locator('#rows .service[data-service="worker"]')
        worker.locator('button[data-action="stop"]').click()
        expect(worker).to_have_attribute("data-status", "stopped", timeout=10_000)
        first = page.locator("#messages li").first
        expect(first).to_have_attribute("data-text", "service stopped, name=worker")
        page.locator('#rows .service[data-service="stubborn"] button[data-action="stop"]').click()
        expect(first).to_have_class("error", timeout=10_000)
        seen.messages = [
            li.get_attribute("data-text") or "" for li in page.locator("#messages li").all()
        ]
        control("stop", "console")
        expect(page.locator("body")).to_have_class("offline", timeout=10_000)
        seen.banner = page.locator("#offline").inner_text()
        seen.classes = page.locator("body").get_attribute("class") or ""
        seen.opacity = float(
            page.locator('#rows .service[data-service="gone"] .col-phase').evaluate(
                "n => getComputedStyle(n).opacity"
            )
        )
        seen.enabled_offline = page.locator(actions + ":enabled").count()
        seen.restart_all_offline = page.locator("#restart-all").is_disabled()
        control("delete", "gone")
        control("start", "console")
        expect(page.locator("body")).not_to_have_class("offline", timeout=15_000)
        expect(page.locator("#rows .service")).to_have_count(3)
        seen.rows_back = sorted(page.locator("#rows .col-name").all_text_contents())
        seen.enabled_back = page.locator(actions + ":enabled").count()
        seen.banner_back = page.locator("#offline").is_hidden()
    return seen


async def test_console_disconnected_in_chromium() -> None:
    """Without its stream the page greys out and disables actions; it resyncs on return."""
    _require_browser()
    m = trisup.Manager("shop")
    m.add(trisup.new_service("worker", trio.sleep_forever))
    m.add(trisup.new_service("gone", trio.sleep_forever))
    m.add(trisup.new_service("stubborn", _stubborn), stop_timeout=0.25)
    console = ConsoleService(m, bind=f"127.0.0.1:{_free_port()}")
    m.add(console)
    token = trio.lowlevel.current_trio_token()

    async def control_async(verb: str, name: str) -> None:
        if verb == "stop":
            await m.stop_service(name)
        elif verb == "start":
            await m.start_service(name)
        else:
            await m.delete(name)

    def control(verb: str, name: str) -> None:
        trio.from_thread.run(control_async, verb, name, trio_token=token)

    seen = await _serve(m, console, partial(_drive_honest, control=control))
    assert seen.problems == []
    assert len(seen.messages) == 2
    assert re.fullmatch(r"stop of stubborn failed: HTTP 504 .*stubborn.*", seen.messages[0])
    assert seen.messages[1] == "service stopped, name=worker"  # kept, not overwritten
    assert re.fullmatch(r"Disconnected since \d\d:\d\d:\d\d, retrying", seen.banner), seen.banner
    assert "offline" in seen.classes.split()
    assert seen.opacity < 1
    assert seen.enabled_offline == 0
    assert seen.restart_all_offline
    assert seen.rows_back == ["console", "stubborn", "worker"]  # gone while away: gone
    assert seen.enabled_back > 0
    assert seen.banner_back


@dataclass
class Asked:
    """What the confirmation test saw."""

    stop_title: str = ""
    stop_items: list[str] = field(default_factory=list[str])
    after_cancel: str = ""
    messages_after_cancel: int = -1
    restart_items: list[str] = field(default_factory=list[str])
    restarted: str = ""
    lone_asked: bool = True
    lone: str = ""
    self_text: str = ""
    all_items: list[str] = field(default_factory=list[str])
    all_text: str = ""
    problems: list[str] = field(default_factory=list[str])


def _drive_asked(url: str) -> Asked:
    """Stop and restart a dependency, stop a lone service, the console, restart all."""
    from playwright.sync_api import expect

    seen = Asked()
    with _chromium() as browser:
        page = _watch(_new_page(browser), seen.problems)
        dialogs: list[str] = []

        def refuse(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", refuse)
        page.goto(url + "?detail=lone")  # a link to the view with lone's details open
        expect(page.locator("#rows .service")).to_have_count(5)
        expect(page.locator('#rows .details[data-service="lone"]')).to_have_count(1)
        expect(page.locator("#connection")).to_have_text("live")
        confirm = page.locator("#confirm")
        items = page.locator("#confirm-list li")
        first = page.locator("#messages li").first

        def row(name: str) -> Locator:
            return page.locator(f'#rows .service[data-service="{name}"]')

        expect(row("web")).to_have_attribute("data-status", "running", timeout=10_000)
        row("db").locator('button[data-action="stop"]').click()
        expect(confirm).to_be_visible()
        seen.stop_title = page.locator("#confirm-title").inner_text()
        seen.stop_items = items.all_inner_texts()
        page.locator("#confirm-cancel").click()
        expect(confirm).to_be_hidden()
        page.wait_for_timeout(500)
        seen.after_cancel = row("db").get_attribute("data-status") or ""
        seen.messages_after_cancel = page.locator("#messages li").count()

        row("db").locator('button[data-action="restart"]').click()
        expect(confirm).to_be_visible()
        seen.restart_items = items.all_inner_texts()
        page.locator("#confirm-ok").click()
        expect(first).to_have_attribute("data-text", re.compile("."), timeout=10_000)
        seen.restarted = first.get_attribute("data-text") or ""

        row("lone").locator('button[data-action="stop"]').click()
        expect(row("lone")).to_have_attribute("data-status", "stopped", timeout=10_000)
        seen.lone_asked = confirm.is_visible()
        expect(first).to_have_attribute("data-text", "service stopped, name=lone")
        seen.lone = first.get_attribute("data-text") or ""

        row("console").locator('button[data-action="stop"]').click()
        expect(confirm).to_be_visible()
        seen.self_text = page.locator("#confirm-text").inner_text()
        page.keyboard.press("Escape")  # as Cancel
        expect(confirm).to_be_hidden()

        page.locator("#restart-all").click()
        expect(confirm).to_be_visible()
        seen.all_items = items.all_inner_texts()
        seen.all_text = page.locator("#confirm-text").inner_text()
        page.locator("#confirm-cancel").click()
        expect(confirm).to_be_hidden()
        page.wait_for_timeout(300)
        seen.problems.extend(dialogs)  # never window.confirm
    return seen


async def test_console_confirmations_in_chromium() -> None:
    """Stop or restart of a dependency, the console's own Stop and Restart all ask first."""
    _require_browser()
    m = trisup.Manager("shop")
    m.add(trisup.new_service("db", trio.sleep_forever))
    m.add(trisup.new_service("api", trio.sleep_forever), depends_on=["db"])
    m.add(trisup.new_service("web", trio.sleep_forever), depends_on=["api"])
    m.add(trisup.new_service("lone", trio.sleep_forever))
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    seen = await _serve(m, console, _drive_asked)
    assert seen.problems == []
    assert seen.stop_title == "Stop db?"
    assert seen.stop_items == ["api", "web"]  # web depends on db through api
    assert seen.after_cancel == "running"
    assert seen.messages_after_cancel == 0
    assert seen.restart_items == ["api", "web"]
    assert seen.restarted == "service restarted, name=db"
    assert not seen.lone_asked
    assert seen.lone == "service stopped, name=lone"
    assert "Stopping console ends this page's connection" in seen.self_text
    assert seen.all_items == ["api", "console", "db", "lone", "web"]
    assert "console" in seen.all_text
    starts = {name: m.get_service_info(name).metric.start_count for name in ("db", "api", "lone")}
    assert starts == {"db": 2, "api": 2, "lone": 1}  # the restart reached the dependent


@dataclass
class Grouped:
    """What the groups test saw."""

    flappies: list[str] = field(default_factory=list[str])
    summary: str = ""
    collapsed_rows: list[str] = field(default_factory=list[str])
    expanded: str = ""
    url: str = ""
    linked_rows: list[str] = field(default_factory=list[str])
    linked_headers: list[str] = field(default_factory=list[str])
    reopened: list[str] = field(default_factory=list[str])
    failing_rows: list[str] = field(default_factory=list[str])
    failing_headers: list[str] = field(default_factory=list[str])
    problems: list[str] = field(default_factory=list[str])


def _rows_with_groups(page: Page) -> list[str]:
    """The rows on show: group headers as ``[path]``, services as ``group/name``."""
    rows: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('#rows > :not([hidden])')]
            .filter((r) => !r.classList.contains('details'))
            .map((r) => r.classList.contains('group') ? `[${r.dataset.group}]`
                 : `${r.dataset.group}/${r.dataset.service}`)"""
    )
    return rows


def _drive_groups(url: str) -> Grouped:
    """Collapse and expand a nested manager's group, from a click and from the URL."""
    from playwright.sync_api import expect

    seen = Grouped()
    with _chromium() as browser:
        page = _watch(_new_page(browser), seen.problems)
        page.goto(url)
        expect(page.locator("#rows .service")).to_have_count(8)
        jobs = page.locator('#rows .group[data-group="jobs"]')
        flappy = page.locator('#rows .service[data-group="jobs"][data-service="flappy"]')
        expect(flappy).to_have_attribute("data-status", "crashing", timeout=10_000)
        expect(jobs.locator(".summary")).to_contain_text("1 failing", timeout=10_000)
        seen.summary = jobs.locator(".summary").text_content() or ""
        seen.flappies = [
            f"{r.get_attribute('data-group')}:{r.get_attribute('data-status')}"
            for r in page.locator('#rows .service[data-service="flappy"]').all()
        ]
        jobs.locator("button.toggle").click()
        seen.collapsed_rows = _rows_with_groups(page)
        seen.expanded = jobs.locator("button.toggle").get_attribute("aria-expanded") or ""
        seen.url = page.evaluate("location.search")

        linked = _watch(_new_page(browser), seen.problems)
        linked.goto(url + seen.url)
        expect(linked.locator("#rows .service")).to_have_count(8)
        seen.linked_rows = _rows_with_groups(linked)
        linked.locator('#rows .group[data-group="jobs"] button.toggle').click()
        seen.reopened = _rows_with_groups(linked)
        mailer = linked.locator('#rows .service[data-group="jobs"][data-service="mailer"]')
        mailer.locator('button[data-action="stop"]').click()  # POST ...?group=jobs
        expect(mailer).to_have_attribute("data-status", "stopped", timeout=10_000)
        expect(linked.locator("#messages li").first).to_have_attribute(
            "data-text", "service stopped, name=mailer"
        )
        linked.locator('#cards .card[data-filter="failing"]').click()
        seen.failing_rows = _rows_with_groups(linked)
    return seen


async def test_console_groups_in_chromium() -> None:
    """A nested manager's services form a collapsible group with its own summary."""
    _require_browser()
    m = trisup.Manager("shop")
    m.add(trisup.new_service("flappy", trio.sleep_forever))  # same name, another group
    m.add(trisup.new_service("web", trio.sleep_forever))
    jobs = trisup.Manager("jobs")
    jobs.add(trisup.new_service("mailer", trio.sleep_forever))
    jobs.add(
        trisup.new_service("flappy", _flap),
        restart_delay=0.05,
        backoff_multiplier=1,
        max_restarts_in_window=0,
    )
    sub = trisup.Manager("sub")
    sub.add(trisup.new_service("indexer", trio.sleep_forever))
    jobs.add(sub)
    m.add(jobs)
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    seen = await _serve(m, console, _drive_groups)
    assert seen.problems == []
    assert sorted(seen.flappies) == [":running", "jobs:crashing"]
    assert seen.summary == "3 services · 1 failing · 3 running"
    root = ["/console", "/flappy", "/jobs", "/web"]
    assert seen.collapsed_rows == [*root, "[jobs]"]  # its services and subgroups hidden
    assert seen.expanded == "false"
    assert seen.url == "?collapsed=jobs"
    assert seen.linked_rows == seen.collapsed_rows
    everything = [*root, "[jobs]", "jobs/flappy", "jobs/mailer", "jobs/sub", "[jobs/sub]"]
    assert seen.reopened == [*everything, "jobs/sub/indexer"]
    assert seen.failing_rows == ["[jobs]", "jobs/flappy"]
    assert jobs.get_service_info("mailer").stopped


async def _crash_at_once() -> None:
    raise RuntimeError("crash at once")


WATCH_FRAMES = """() => {
  window.frameGaps = [];
  window.longTasks = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.longTasks.push(entry.duration);
  }).observe({ type: "longtask" });
  let last = performance.now();
  const tick = (t) => { window.frameGaps.push(t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""

FILTER_FRAMES = """async (expected) => {
  const shown = () => document.querySelectorAll('#rows .service:not([hidden])').length;
  document.querySelector('#cards .card[data-filter="failing"]').click();
  let frames = 0;
  while (shown() !== expected && frames < 600) {
    await new Promise((done) => requestAnimationFrame(done));
    frames++;
  }
  return [frames, shown()];
}"""


@dataclass
class AtScale:
    """What the 1,000-service test saw."""

    frames: int = 0
    long_tasks: list[float] = field(default_factory=list[float])
    filter_frames: int = -1
    filter_rows: int = -1
    problems: list[str] = field(default_factory=list[str])


def _drive_scale(url: str) -> AtScale:
    """Watch the page for three seconds under 100 crash loops, then filter."""
    from playwright.sync_api import expect

    seen = AtScale()
    with _chromium() as browser:
        page = _watch(_new_page(browser, 1400, 900), seen.problems)
        page.goto(url)
        expect(page.locator("#rows .service")).to_have_count(1001, timeout=30_000)
        expect(page.locator("#card-failing")).to_have_text("100", timeout=30_000)
        page.evaluate(WATCH_FRAMES)
        page.wait_for_timeout(3000)
        seen.frames = page.evaluate("window.frameGaps.length")
        seen.long_tasks = page.evaluate("window.longTasks")
        seen.filter_frames, seen.filter_rows = page.evaluate(FILTER_FRAMES, 100)
    return seen


async def test_console_at_scale_in_chromium() -> None:
    """1,000 services, 100 crash-looping: the page keeps drawing frames and filters at once."""
    _require_browser()
    m = trisup.Manager("scale")
    for i in range(1000):
        if i < 100:
            m.add(
                trisup.new_service(f"crash-{i:03d}", _crash_at_once),
                restart_delay=0.05,
                backoff_multiplier=1,
                max_restarts_in_window=0,
            )
        else:
            m.add(trisup.new_service(f"idle-{i:03d}", trio.sleep_forever))
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    logger = logging.getLogger("trisup")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # 100 crash loops would log a traceback each
    try:
        seen = await _serve(m, console, _drive_scale)
    finally:
        logger.setLevel(level)
    assert seen.problems == []
    # generous bounds: a page that lays out the whole table per event draws ~5 frames a
    # second with 200-500 ms tasks; this one draws ~60 with none over ~70 ms
    assert seen.frames >= 30, seen.frames
    assert max(seen.long_tasks, default=0) < 300, seen.long_tasks
    assert seen.filter_rows == 100
    assert seen.filter_frames <= 5
