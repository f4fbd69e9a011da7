"""The console's details panel (``static/details.js``) in Debian's Chromium.

A real `Manager` with a `ConsoleService`; the panel is opened through its API,
``window.TrisupDetails.open(container, {group, name}, {disconnected})``, on a
container the test adds to the page, and reads the real details endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import trio
from test_console_browser import (  # the browser tests share one way to find Chromium
    CHROMIUM,
    FLAGS,
    ODD,
    _require_browser,  # pyright: ignore[reportPrivateUsage]
)

import trisup
from trisup.http import ConsoleService
from trisup.process import ProcessService

if TYPE_CHECKING:
    from playwright.sync_api import Page

# prints its own pid, a line on stderr, then fails after a while
CRASHER = ["sh", "-c", "echo starting pid $$; echo oops >&2; sleep 1.5; exit 1"]
MISSING = "/nonexistent/trisup-test/credentials.json"


async def _read_credentials() -> None:
    with open(MISSING) as file:  # noqa: ASYNC230 - it fails at once, by design
        file.read()


def _manager() -> tuple[trisup.Manager, ConsoleService]:
    m = trisup.Manager("shop")
    m.add(
        ProcessService("crasher", CRASHER),
        restart_delay=1.5,  # the last exit is shown while it backs off
        backoff_multiplier=1,
        max_restarts_in_window=0,
    )
    m.add(trisup.new_service("creds", _read_credentials), max_restarts=1, restart_delay=0.25)
    m.add(trisup.new_service(ODD, trio.sleep_forever))
    jobs = trisup.Manager("jobs")
    jobs.add(trisup.new_service("nightly", trio.sleep_forever))
    m.add(jobs)
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    return m, console


def _open(page: Page, name: str, group: str = "", width: int = 900) -> None:
    """Add a container *width* px wide to the page and open the panel of *name* in it."""
    if not page.evaluate("'TrisupDetails' in window"):
        page.add_script_tag(url="static/details.js")
        page.add_style_tag(url="static/details.css")
    page.evaluate(
        """([group, name, width]) => {
            let box = document.getElementById("test-panel");
            if (!box) {
                box = document.createElement("div");
                box.id = "test-panel";
                document.body.prepend(box);
            }
            box.style.width = width + "px";
            if (window.panel) window.panel.close();
            window.panel = window.TrisupDetails.open(box, {group, name},
                {disconnected: () => window.down === true});
        }""",
        [group, name, width],
    )


@dataclass
class Seen:
    """What the browser saw."""

    problems: list[str] = field(default_factory=list[str])
    pid: int = 0
    pid_lines: list[str] = field(default_factory=list[str])
    exit: str = ""
    schedule: str = ""
    error: str = ""
    lines_before: int = 0
    lines_after: int = 0
    stderr: list[str] = field(default_factory=list[str])
    stdout: list[str] = field(default_factory=list[str])
    long_polls: list[str] = field(default_factory=list[str])
    command: str = ""
    overflow: list[int] = field(default_factory=list[int])
    config: dict[str, str] = field(default_factory=dict[str, str])
    fnf_error: str = ""
    fnf_traceback: str = ""
    raw: str = ""
    odd_title: str = ""
    nested: list[str] = field(default_factory=list[str])
    quiet: list[bool] = field(default_factory=list[bool])
    markup: int = -1
    after_close: list[str] = field(default_factory=list[str])
    emptied: bool = False
    while_down: list[str] = field(default_factory=list[str])
    resumed: bool = False
    row_pid: str = ""
    row_overflow: int = -1
    after_row_close: list[str] = field(default_factory=list[str])


def _browse(url: str, drive: Callable[[Page, Seen, list[str]], None]) -> Seen:
    """In a worker thread: open the page in Chromium and let *drive* use it."""
    from playwright.sync_api import sync_playwright

    seen = Seen()
    requested: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: seen.problems.append(str(error)))
            page.on(
                "console",
                lambda msg: seen.problems.append(msg.text) if msg.type == "error" else None,
            )
            page.goto(url)
            drive(page, seen, requested)
        finally:
            browser.close()
    return seen


def _crasher_and_creds(page: Page, seen: Seen, requested: list[str]) -> None:
    from playwright.sync_api import expect

    _open(page, "crasher")
    panel = page.locator("#test-panel .tsd-panel")
    expect(panel.locator(".tsd-name")).to_have_text("crasher")
    exit_fact = panel.locator(".tsd-exit dd")
    expect(exit_fact).to_contain_text("exited with code 1", timeout=10_000)
    seen.exit = exit_fact.inner_text()
    expect(panel.locator(".tsd-error-line")).to_contain_text("ProcessExited")
    seen.error = panel.locator(".tsd-error-line").inner_text()
    expect(panel.locator(".tsd-schedule dd")).to_have_text(re.compile(r"\S"))
    seen.schedule = panel.locator(".tsd-schedule dd").inner_text()
    # the pid of a running instance, and the line that instance printed itself
    pid_fact = panel.locator(".tsd-pid dd")
    expect(pid_fact).to_have_text(re.compile(r"^\d+$"), timeout=10_000)
    seen.pid = int(pid_fact.inner_text())
    mine = panel.locator(".tsd-line").filter(has_text=f"starting pid {seen.pid}")
    expect(mine).to_have_count(1, timeout=10_000)
    seen.pid_lines = mine.all_inner_texts()
    # the tail grows while the panel is open: the next instance's lines arrive
    lines = panel.locator(".tsd-line")
    seen.lines_before = lines.count()
    expect(lines).not_to_have_count(seen.lines_before, timeout=10_000)
    seen.lines_after = lines.count()
    seen.stderr = panel.locator(".tsd-line.tsd-stderr").all_inner_texts()
    seen.stdout = panel.locator(".tsd-line.tsd-stdout .tsd-text").all_inner_texts()
    seen.long_polls = [u for u in requested if "/api/service/crasher/output?" in u]
    seen.command = panel.locator(".tsd-command dd").inner_text()
    seen.config = dict(
        zip(
            panel.locator(".tsd-config th").all_inner_texts(),
            panel.locator(".tsd-config td").all_inner_texts(),
            strict=True,
        )
    )
    # usable 900 px wide: nothing wider than the panel
    seen.overflow = page.evaluate(
        """() => [...document.querySelectorAll(
                "#test-panel, #test-panel .tsd-panel, #test-panel .tsd-lines")]
            .map((node) => node.scrollWidth - node.clientWidth)"""
    )

    _open(page, "creds")
    expect(panel.locator(".tsd-name")).to_have_text("creds")
    error = panel.locator(".tsd-error-line")
    expect(error).to_contain_text("FileNotFoundError: ", timeout=10_000)
    seen.fnf_error = error.inner_text()
    panel.locator(".tsd-traceback summary").click()
    seen.fnf_traceback = panel.locator(".tsd-traceback pre").inner_text()
    panel.locator(".tsd-raw summary").click()
    seen.raw = panel.locator(".tsd-raw-info").inner_text()

    _open(page, ODD)
    expect(panel.locator(".tsd-phase")).to_have_text("running")
    seen.odd_title = panel.locator(".tsd-name").inner_text()
    seen.markup = page.locator("#test-panel b").count()

    _open(page, "nightly", group="jobs")
    expect(panel.locator(".tsd-name")).to_have_text("nightly")
    expect(panel.locator(".tsd-status")).to_have_text("running")
    seen.nested = [panel.locator(".tsd-group").inner_text(), *panel.locator("dt").all_inner_texts()]
    seen.quiet = [
        panel.locator(".tsd-error").is_hidden(),
        panel.locator(".tsd-output").is_hidden(),
        "null" not in panel.inner_text(),  # the raw JSON is folded
    ]


async def test_details_of_a_crashing_process_and_a_missing_file() -> None:
    """The panel shows a crashing child's pid, exit, live output, schedule and error in words."""
    _require_browser()
    m, console = _manager()
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            assert console.url is not None
            seen = await trio.to_thread.run_sync(_browse, console.url, _crasher_and_creds)
            nursery.cancel_scope.cancel()
    assert seen.problems == []
    assert seen.pid_lines == [f"starting pid {seen.pid}"]
    assert re.fullmatch(r"exited with code 1 at \d\d:\d\d:\d\d, \d+ s ago", seen.exit), seen.exit
    assert seen.error.startswith("ProcessExited: "), seen.error
    assert seen.schedule
    assert seen.lines_after > seen.lines_before
    assert seen.long_polls and all("wait=25" in u for u in seen.long_polls)
    assert seen.stderr and all(line == "stderr\noops" for line in seen.stderr), seen.stderr
    assert seen.stdout and all(line.startswith("starting pid ") for line in seen.stdout)
    assert seen.command == "sh -c 'echo starting pid $$; echo oops >&2; sleep 1.5; exit 1'"
    assert seen.config["restart delay"] == "1.5 s"
    assert seen.config["stop timeout"] == "10 s"
    assert seen.overflow == [0, 0, 0]
    assert seen.fnf_error.startswith("FileNotFoundError: "), seen.fnf_error
    assert MISSING in seen.fnf_error
    assert "Traceback" in seen.fnf_traceback
    assert "_read_credentials" in seen.fnf_traceback
    assert '"name": "creds"' in seen.raw
    assert seen.odd_title == ODD
    assert seen.markup == 0
    assert seen.nested == ["in jobs", "restarts"]  # quiet: no error, output or process facts
    assert seen.quiet == [True, True, True]


def _close_and_disconnect(page: Page, seen: Seen, requested: list[str]) -> None:
    from playwright.sync_api import expect

    def panel_requests() -> list[str]:
        return [u for u in requested if "/api/service/crasher/" in u]

    _open(page, "crasher")
    panel = page.locator("#test-panel .tsd-panel")
    expect(panel.locator(".tsd-line").first).to_be_visible(timeout=10_000)
    page.wait_for_timeout(1500)  # a few refreshes and a long poll under way
    # disconnected: greyed, and nothing is asked until it is back
    page.evaluate("window.down = true")
    expect(panel).to_have_class(re.compile(r"\btsd-disconnected\b"), timeout=3000)
    page.wait_for_timeout(300)
    before = len(panel_requests())
    page.wait_for_timeout(2500)
    seen.while_down = panel_requests()[before:]
    page.evaluate("window.down = false")
    expect(panel).not_to_have_class(re.compile(r"\btsd-disconnected\b"), timeout=3000)
    back = len(panel_requests())
    page.wait_for_timeout(1500)
    seen.resumed = len(panel_requests()) > back
    # closed: no request after close(), and the container is empty
    page.evaluate("window.panel.close()")
    before = len(panel_requests())
    page.wait_for_timeout(2500)
    seen.after_close = panel_requests()[before:]
    seen.emptied = page.evaluate('document.getElementById("test-panel").childElementCount === 0')
    # the page's own Details button opens the same panel under the row, and closes it
    button = page.locator('#rows [data-service="crasher"] button[data-action="details"]')
    button.click()
    row_panel = page.locator("#rows .details .tsd-panel")
    expect(row_panel.locator(".tsd-name")).to_have_text("crasher")
    expect(row_panel.locator(".tsd-pid dd")).to_have_text(re.compile(r"^\d+$"), timeout=10_000)
    seen.row_pid = row_panel.locator(".tsd-pid dd").inner_text()
    page.set_viewport_size({"width": 900, "height": 800})
    page.wait_for_timeout(300)
    seen.row_overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    button.click()
    expect(row_panel).to_have_count(0)
    before = len(panel_requests())
    page.wait_for_timeout(2500)
    seen.after_row_close = panel_requests()[before:]


async def test_close_and_disconnected_stop_the_polling() -> None:
    """While disconnected() is true the panel is greyed and idle; after close() it asks nothing.

    The page's Details button opens the panel under the row and closes it the same way.
    """
    _require_browser()
    m, console = _manager()
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            assert console.url is not None
            seen = await trio.to_thread.run_sync(_browse, console.url, _close_and_disconnect)
            nursery.cancel_scope.cancel()
    assert seen.problems == []
    assert seen.while_down == []
    assert seen.resumed
    assert seen.after_close == []
    assert seen.emptied
    assert seen.row_pid
    assert seen.row_overflow == 0  # the page 900 px wide, with the panel open
    assert seen.after_row_close == []


def _console_goes_away(stop_console: Callable[[], None]) -> Callable[[Page, Seen, list[str]], None]:
    def drive(page: Page, seen: Seen, requested: list[str]) -> None:
        from playwright.sync_api import expect

        page.locator('#rows [data-service="crasher"] button[data-action="details"]').click()
        panel = page.locator("#rows .details .tsd-panel")
        expect(panel.locator(".tsd-line").first).to_be_visible(timeout=10_000)
        stop_console()
        expect(panel).to_have_class(re.compile(r"\btsd-disconnected\b"), timeout=10_000)
        page.wait_for_timeout(300)
        before = len(requested)
        page.wait_for_timeout(2500)
        seen.while_down = [u for u in requested[before:] if "/api/service/" in u]
        seen.resumed = panel.is_visible()

    return drive


async def test_the_panel_greys_out_when_the_console_stops() -> None:
    """With the console's server stopped under the page, the open panel is greyed and idle."""
    _require_browser()
    m, console = _manager()
    token = trio.lowlevel.current_trio_token()
    stop = partial(trio.from_thread.run, partial(m.stop_service, "console"), trio_token=token)
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            assert console.url is not None
            seen = await trio.to_thread.run_sync(_browse, console.url, _console_goes_away(stop))
            nursery.cancel_scope.cancel()
    # the browser reports the refused connections themselves, nothing else
    assert [p for p in seen.problems if "net::ERR_" not in p] == []
    assert seen.while_down == []
    assert seen.resumed  # still shown, greyed, with what it last knew
