"""The console page at 1,000 services, 100 of them crash-looping, measured in Chromium.

Starts a Manager with *n* services (``--crashing`` of them failing at once and
restarted after 0.05 s, for ever) and a ConsoleService, opens the page in Debian's
Chromium (Playwright, ``executable_path=/usr/bin/chromium``), waits until every row
is in, then for ``--seconds`` records, from the Chrome DevTools Protocol's
``Performance.getMetrics``, the page's script and task time per second of wall time,
and from the page itself the longest frame (``requestAnimationFrame`` intervals) and
the long tasks (``PerformanceObserver('longtask')``). Finally it clicks the
"failing" card and counts the frames until only the failing rows show.

    python tools/console_page.py [--services 1000] [--crashing 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import cast

import trio

import trisup
from trisup.http import ConsoleService

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]

OBSERVE = """() => {
  window.__frames = [];
  window.__longtasks = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longtasks.push(e.duration);
  }).observe({ type: "longtask" });
  let last = performance.now();
  const tick = (t) => { window.__frames.push(t - last); last = t; requestAnimationFrame(tick); };
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


async def _crash() -> None:
    raise RuntimeError("crash at once")


def build(services: int, crashing: int) -> tuple[trisup.Manager, ConsoleService]:
    """The manager: *services* services, the first *crashing* of them crash-looping."""
    m = trisup.Manager("scale")
    for i in range(services):
        if i < crashing:
            m.add(
                trisup.new_service(f"crash-{i:04d}", _crash),
                restart_delay=0.05,
                backoff_multiplier=1,
                max_restarts_in_window=0,
            )
        else:
            m.add(trisup.new_service(f"idle-{i:04d}", trio.sleep_forever))
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    return m, console


def measure(url: str, services: int, crashing: int, seconds: float) -> dict[str, float]:
    """Open *url* in Chromium and measure the page (in a worker thread)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            cdp = page.context.new_cdp_session(page)
            send = cast(Callable[[str], object], cdp.send)  # pyright: ignore[reportUnknownMemberType]
            send("Performance.enable")
            page.goto(url)
            expect(page.locator("#rows .service")).to_have_count(services + 1, timeout=30_000)
            expect(page.locator("#card-failing")).to_have_text(str(crashing), timeout=30_000)
            page.evaluate(OBSERVE)

            def metrics() -> dict[str, float]:
                answer = cast(dict[str, list[dict[str, float]]], send("Performance.getMetrics"))
                return {str(m["name"]): m["value"] for m in answer["metrics"]}

            before = metrics()
            page.wait_for_timeout(seconds * 1000)
            after = metrics()
            frames = cast(list[float], page.evaluate("window.__frames"))
            longtasks = cast(list[float], page.evaluate("window.__longtasks"))
            wall = after["Timestamp"] - before["Timestamp"]
            restarts = int(page.locator("#card-restarts").inner_text())
            snapshots = int(page.locator("body").get_attribute("data-snapshots") or 0)
            filter_frames, shown = cast(list[int], page.evaluate(FILTER_FRAMES, crashing))
        finally:
            browser.close()
    return {
        "wall_s": round(wall, 2),
        "script_ms_per_s": round(
            1000 * (after["ScriptDuration"] - before["ScriptDuration"]) / wall, 1
        ),
        "task_ms_per_s": round(1000 * (after["TaskDuration"] - before["TaskDuration"]) / wall, 1),
        "layout_ms_per_s": round(
            1000 * (after["LayoutDuration"] - before["LayoutDuration"]) / wall, 1
        ),
        "style_ms_per_s": round(
            1000 * (after["RecalcStyleDuration"] - before["RecalcStyleDuration"]) / wall, 1
        ),
        "frames": len(frames),
        "longest_frame_ms": round(max(frames, default=0.0), 1),
        "long_tasks": len(longtasks),
        "longest_task_ms": round(max(longtasks, default=0.0), 1),
        "restarts_seen": restarts,
        "snapshots": snapshots,
        "filter_frames": filter_frames,
        "filter_rows": shown,
    }


async def main(services: int, crashing: int, seconds: float) -> dict[str, float]:
    """Serve the tree, measure, stop."""
    m, console = build(services, crashing)
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        assert console.url is not None
        figures = await trio.to_thread.run_sync(measure, console.url, services, crashing, seconds)
        nursery.cancel_scope.cancel()
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="The console page at 1,000 services, measured in Chromium."
    )
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--crashing", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    import logging

    logging.disable(logging.CRITICAL)  # 100 crash loops log a traceback each
    result = trio.run(main, args.services, args.crashing, args.seconds)
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
