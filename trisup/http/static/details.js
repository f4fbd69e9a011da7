// trisup console: one service's details panel, in words.
//
//   const panel = window.TrisupDetails.open(container, {group, name}, {disconnected});
//   ...
//   panel.close();
//
// open() fills *container* with the panel and keeps it live: the facts are fetched
// again every second (GET api/service/NAME/details), a process's output is followed
// with a long poll (GET api/service/NAME/output?after=N&wait=25). While
// disconnected() answers true the panel is greyed and polls nothing; it resumes after.
// close() stops every timer and request and empties the container.
// Everything the server sends is inserted with textContent, never as markup.
(() => {
  "use strict";

  const REFRESH_MS = 1000; // the facts, while the panel is open
  const OUTPUT_WAIT = 25; // seconds a long poll of the output may wait
  const RETRY_MS = 1000; // after a failed request
  const MAX_LINES = 500; // output lines kept in the panel
  // configuration fields that hold seconds, shown as durations
  const SECONDS = /^(restart_window|kill_after)$|_(delay|timeout|period|interval|seconds)$/;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  const isSet = (value) => value !== null && value !== undefined && value !== "";

  // ------------------------------------------------------------- formatting

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // "12:03:41", local time, from wall seconds or an RFC 3339 string
  function clock(when) {
    const ms = toMillis(when);
    if (ms === null) return "";
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function toMillis(when) {
    if (typeof when === "number" && Number.isFinite(when)) return when * 1000;
    if (typeof when === "string" && when) {
      const ms = Date.parse(when);
      return Number.isNaN(ms) ? null : ms;
    }
    return null;
  }

  // "4 s", "2 min 5 s", "1 h 3 min", "250 ms"
  function duration(seconds) {
    if (!Number.isFinite(seconds)) return "";
    if (seconds === 0) return "0 s";
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 10 && !Number.isInteger(seconds)) return `${seconds.toFixed(1).replace(/\.0$/, "")} s`;
    const s = Math.round(seconds);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const rest = s % 60;
    if (h) return m ? `${h} h ${m} min` : `${h} h`;
    if (m) return rest ? `${m} min ${rest} s` : `${m} min`;
    return `${rest} s`;
  }

  // "at 12:03:41, 4 s ago"
  function when(time) {
    const ms = toMillis(time);
    if (ms === null) return "";
    const ago = Math.max(0, (Date.now() - ms) / 1000);
    return `at ${clock(time)}, ${duration(Math.floor(ago))} ago`;
  }

  // argv as a shell would read it: plain words bare, the others quoted
  function shellJoin(argv) {
    return argv
      .map((word) => {
        const text = String(word);
        if (text && /^[\w@%+=:,./-]+$/.test(text)) return text;
        if (text.includes("'") && !/["\\$`!]/.test(text)) return `"${text}"`;
        return `'${text.replace(/'/g, "'\\''")}'`;
      })
      .join(" ");
  }

  function configValue(field, value) {
    if (value === null || value === undefined) return SECONDS.test(field) ? "no limit" : "none";
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (typeof value === "number" && SECONDS.test(field)) return duration(value);
    if (Array.isArray(value)) return value.length ? value.map(String).join(", ") : "none";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  // ------------------------------------------------------------------ panel

  function open(container, target, options) {
    const name = String(target.name);
    const group = target.group ? String(target.group) : "";
    const disconnected = options && typeof options.disconnected === "function" ? options.disconnected : () => false;
    const query = group ? `group=${encodeURIComponent(group)}` : "";
    const base = `api/service/${encodeURIComponent(name)}`;
    const detailsUrl = `${base}/details${query ? "?" + query : ""}`;
    const outputUrl = (after) => `${base}/output?${query ? query + "&" : ""}after=${after}&wait=${OUTPUT_WAIT}`;

    // ---- the skeleton: built once, filled by render()
    const panel = el("section", "tsd-panel");
    panel.setAttribute("aria-label", `Details of ${name}`);
    const head = el("div", "tsd-head"); // not a <header>: the page styles its own
    const title = el("h2", "tsd-name", name);
    const where = el("span", "tsd-group", group ? `in ${group}` : "");
    const phaseBadge = el("span", "tsd-badge tsd-phase");
    const statusBadge = el("span", "tsd-badge tsd-status");
    const note = el("span", "tsd-note");
    note.setAttribute("role", "status");
    head.append(title, where, phaseBadge, statusBadge, note);

    const facts = el("dl", "tsd-facts");

    const errorBox = el("section", "tsd-error");
    const errorLine = el("p", "tsd-error-line");
    const errorTime = el("p", "tsd-error-time");
    const traceback = el("details", "tsd-traceback");
    const tracebackText = el("pre");
    traceback.append(el("summary", "", "Traceback"), tracebackText);
    errorBox.append(el("h3", "", "Last error"), errorLine, errorTime, traceback);

    const outputBox = el("section", "tsd-output");
    const outputCount = el("span", "tsd-count");
    const outputTitle = el("h3", "", "Output ");
    outputTitle.append(outputCount);
    const lines = el("div", "tsd-lines");
    lines.setAttribute("role", "log");
    lines.tabIndex = 0;
    outputBox.append(outputTitle, lines);

    const configBox = el("section", "tsd-config");
    const configTable = el("table");
    const configBody = el("tbody");
    configTable.append(configBody);
    configBox.append(el("h3", "", "Configuration"), configTable);

    const eventsBox = el("section", "tsd-events");
    const eventList = el("ol", "tsd-event-list");
    eventsBox.append(el("h3", "", "Recent events"), eventList);

    const lower = el("div", "tsd-columns");
    lower.append(configBox, eventsBox);

    const raw = el("details", "tsd-raw");
    const rawInfo = el("pre", "tsd-raw-info");
    const rawBody = el("pre", "tsd-raw-body");
    raw.append(el("summary", "", "Raw JSON"), el("h4", "", "Service (api/service)"), rawInfo, el("h4", "", "Details"), rawBody);

    panel.append(head, facts, errorBox, outputBox, lower, raw);
    for (const box of [errorBox, outputBox, configBox, eventsBox]) box.hidden = true;
    container.replaceChildren(panel);

    // ---- the state
    let closed = false;
    let paused = false; // disconnected() said so at the last tick
    let timer = null;
    let refreshing = null; // the AbortController of the details request
    let polling = null; // the AbortController of the output long poll
    let count = null; // output lines received in all, as the server counts them
    let hasOutput = false;
    let following = null; // the promise of the running follow() loop
    const shown = {}; // section -> the text it was last rendered from

    function changed(section, value) {
      const text = JSON.stringify(value);
      if (shown[section] === text) return false;
      shown[section] = text;
      return true;
    }

    // ---- rendering

    function fact(label, value, className) {
      if (!isSet(value)) return;
      const row = el("div", `tsd-fact ${className || ""}`.trim());
      row.append(el("dt", "", label), el("dd", "", value));
      facts.append(row);
    }

    function renderHead(body) {
      const phase = body.shown || body.phase || "";
      phaseBadge.textContent = phase;
      phaseBadge.className = `tsd-badge tsd-phase phase phase-${phase}`;
      phaseBadge.hidden = !phase;
      const status = body.status || "";
      statusBadge.textContent = status;
      statusBadge.className = `tsd-badge tsd-status status status-${status}`;
      statusBadge.hidden = !status;
      if (body.group !== undefined) where.textContent = body.group ? `in ${body.group}` : "";
    }

    function renderFacts(body) {
      facts.replaceChildren();
      const p = body.process;
      if (p) {
        fact("pid", p.pid, "tsd-pid");
        if (Array.isArray(p.argv) && p.argv.length) fact("command", shellJoin(p.argv), "tsd-command");
        fact("cwd", p.cwd, "tsd-cwd");
        if (p.last_exit) {
          const at = when(p.last_exit_time);
          fact("last exit", at ? `${p.last_exit} ${at}` : p.last_exit, "tsd-exit");
        }
        if (p.relaunches) fact("relaunches", p.relaunches, "tsd-relaunches");
      }
      const schedule = body.schedule;
      if (schedule && schedule.text) fact("restarts", schedule.text, "tsd-schedule");
      if (Array.isArray(body.depends_on) && body.depends_on.length) fact("depends on", body.depends_on.join(", "), "tsd-deps");
      if (Array.isArray(body.dependents) && body.dependents.length) fact("needed by", body.dependents.join(", "), "tsd-dependents");
      if (body.critical === false) fact("readiness", "not critical: /readyz does not count it", "tsd-critical");
      facts.hidden = !facts.childElementCount;
    }

    function renderError(error) {
      errorBox.hidden = !error;
      if (!error) return;
      const type = error.type ? `${error.type}: ` : "";
      errorLine.textContent = type + (error.message || "");
      errorTime.textContent = when(error.time);
      traceback.hidden = !error.traceback;
      if (tracebackText.textContent !== (error.traceback || "")) tracebackText.textContent = error.traceback || "";
    }

    function renderConfig(config) {
      const entries = config && typeof config === "object" ? Object.entries(config) : [];
      configBox.hidden = !entries.length;
      if (!changed("config", config)) return;
      configBody.replaceChildren(
        ...entries.map(([field, value]) => {
          const row = el("tr");
          row.dataset.field = field;
          row.append(el("th", "", field.replace(/_/g, " ")), el("td", "", configValue(field, value)));
          return row;
        }),
      );
    }

    function renderEvents(events) {
      const list = Array.isArray(events) ? events : [];
      eventsBox.hidden = !list.length;
      if (!changed("events", list)) return;
      const follow = atBottom(eventList);
      eventList.replaceChildren(
        ...list.map((event) => {
          const item = el("li", `tsd-event tsd-event-${event.kind || ""}`);
          item.append(el("time", "tsd-time", clock(event.ts)), el("span", "tsd-kind", String(event.kind || "").replace(/_/g, " ")), el("span", "tsd-message", event.message));
          return item;
        }),
      );
      if (follow) eventList.scrollTop = eventList.scrollHeight;
    }

    function renderRaw(body) {
      const info = JSON.stringify(body.info === undefined ? null : body.info, null, 2);
      const all = JSON.stringify(body, null, 2);
      if (rawInfo.textContent !== info) rawInfo.textContent = info;
      if (rawBody.textContent !== all) rawBody.textContent = all;
    }

    function render(body) {
      note.textContent = "";
      renderHead(body);
      renderFacts(body);
      renderError(body.error);
      renderConfig(body.config);
      renderEvents(body.events);
      renderRaw(body);
      const output = body.output;
      hasOutput = Boolean(output);
      outputBox.hidden = !output;
      if (output && count === null) appendLines(output.count, output.lines, true);
    }

    // ---- the output tail

    function atBottom(box) {
      return box.scrollHeight - box.scrollTop - box.clientHeight < 8;
    }

    function appendLines(total, received, replace) {
      const follow = replace || atBottom(lines);
      if (replace) lines.replaceChildren();
      const nodes = (received || []).map(({ stream, line }) => {
        const row = el("div", `tsd-line tsd-${stream === "stderr" ? "stderr" : "stdout"}`);
        row.dataset.stream = stream;
        row.append(el("span", "tsd-stream", stream === "stderr" ? "stderr" : ""), el("span", "tsd-text", line));
        return row;
      });
      lines.append(...nodes);
      while (lines.childElementCount > MAX_LINES) lines.firstElementChild.remove();
      count = total;
      const n = lines.childElementCount;
      outputCount.textContent = n ? `last ${n} of ${total} lines` : "no lines yet";
      if (follow) lines.scrollTop = lines.scrollHeight;
    }

    async function follow() {
      while (!closed && !paused && hasOutput) {
        const controller = new AbortController();
        polling = controller;
        let retry = false;
        try {
          const response = await fetch(outputUrl(count || 0), { cache: "no-store", signal: controller.signal });
          if (closed || paused || controller.signal.aborted) break;
          if (!response.ok) {
            hasOutput = false; // no longer a process: the next refresh says again
            break;
          }
          const data = await response.json();
          if (closed || paused) break;
          // a count below ours is a new instance (a reload): its lines replace ours
          appendLines(data.count, data.lines, data.count < (count || 0));
        } catch (err) {
          if (closed || paused || controller.signal.aborted) break;
          retry = true; // the server is away: try again in a moment
        } finally {
          if (polling === controller) polling = null;
        }
        if (retry) await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }

    function startFollowing() {
      if (!closed && !paused && hasOutput && count !== null && following === null) {
        following = follow().finally(() => {
          following = null;
        });
      }
    }

    // ---- the facts, every second

    async function refresh() {
      const controller = new AbortController();
      refreshing = controller;
      try {
        const response = await fetch(detailsUrl, { cache: "no-store", signal: controller.signal });
        const body = await response.json().catch(() => ({}));
        if (closed || paused) return;
        if (response.ok) {
          render(body);
          startFollowing();
        } else {
          note.textContent = body.error || `HTTP ${response.status}`;
        }
      } catch (err) {
        if (!closed && !paused && !controller.signal.aborted) note.textContent = "no answer from the console";
      } finally {
        if (refreshing === controller) refreshing = null;
      }
    }

    function stopRequests() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      if (refreshing) refreshing.abort();
      if (polling) polling.abort();
    }

    async function tick() {
      timer = null;
      if (closed) return;
      const down = Boolean(disconnected());
      if (down !== paused) {
        paused = down;
        panel.classList.toggle("tsd-disconnected", down);
        if (down) {
          stopRequests();
          note.textContent = "disconnected: not updating";
        }
      }
      if (!paused) await refresh();
      if (!closed) timer = setTimeout(tick, REFRESH_MS);
    }

    function close() {
      if (closed) return;
      closed = true;
      stopRequests();
      if (container.firstChild === panel) container.replaceChildren();
    }

    tick();
    return { close };
  }

  window.TrisupDetails = Object.freeze({ open });
})();
