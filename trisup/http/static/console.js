// trisup console: a live view of one manager, fed by server-sent events.
// Everything the server sends is inserted with textContent, never as markup.
(() => {
  "use strict";

  const WINDOW = 300; // seconds shown by a timeline strip at most
  const MIN_SPAN = 10; // seconds shown at least
  const RUNNING = new Set(["running", "starting", "crashing"]);
  const FAILING = new Set(["crashing", "failed", "error"]);
  // the phases in which the service's task lives: it may be stopped or restarted
  const LIVE = new Set(["waiting_deps", "starting", "running", "stopping", "backoff", "group_wait"]);
  const IN_SERVE = new Set(["starting", "running", "stopping"]); // its uptime grows
  const COLOURS = {};

  const services = new Map(); // name -> {info, phase, at, points, row, cells, actionsKey}
  let skew = 0; // server clock minus ours, in ms
  let tokenRequired = false;

  const $ = (id) => document.getElementById(id);
  const now = () => (Date.now() + skew) / 1000;

  function el(tag, props, text) {
    const node = document.createElement(tag);
    if (props) for (const [key, value] of Object.entries(props)) node[key] = value;
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function duration(seconds) {
    if (!(seconds > 0)) return "—";
    if (seconds < 10) return seconds.toFixed(1) + "s";
    const s = Math.floor(seconds);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (h) return `${h}h${m}m`;
    if (m) return `${m}m${s % 60}s`;
    return `${s}s`;
  }

  function colour(phase) {
    if (!(phase in COLOURS)) {
      const probe = el("span", { className: `swatch phase-${phase}` });
      document.body.append(probe);
      COLOURS[phase] = getComputedStyle(probe).backgroundColor;
      probe.remove();
    }
    return COLOURS[phase];
  }

  // ------------------------------------------------------------ the table

  // The one word shown for a service: "stopped" while stopped by hand, else its phase.
  function shownPhase(info) {
    return info.stopped ? "stopped" : info.phase;
  }

  function upsert(info, phase, ts) {
    let entry = services.get(info.name);
    if (!entry) {
      entry = { info, phase, at: now(), points: [], row: null, cells: null, actionsKey: "" };
      services.set(info.name, entry);
    }
    entry.info = info;
    entry.phase = phase || shownPhase(info);
    entry.at = now();
    const last = entry.points[entry.points.length - 1];
    if (!last || last[1] !== entry.phase) entry.points.push([ts === undefined ? entry.at : ts, entry.phase]);
    renderRow(entry);
  }

  function remove(name) {
    const entry = services.get(name);
    if (!entry) return;
    if (entry.details) entry.details.remove();
    if (entry.row) entry.row.remove();
    services.delete(name);
  }

  function buildRow(entry) {
    const row = el("tr");
    row.dataset.service = entry.info.name;
    const cells = {
      name: el("td", { className: "name" }),
      phase: el("td", { className: "phase-cell" }),
      status: el("td", { className: "status-cell" }),
      starts: el("td", { className: "num" }),
      restarts: el("td", { className: "num" }),
      errors: el("td", { className: "num" }),
      uptime: el("td", { className: "num uptime" }),
      delay: el("td", { className: "num delay" }),
      error: el("td", { className: "error" }),
      timeline: el("td"),
      actions: el("td", { className: "actions" }),
    };
    cells.canvas = el("canvas", { className: "timeline", width: 440, height: 28 });
    cells.timeline.append(cells.canvas);
    for (const key of ["name", "phase", "status", "starts", "restarts", "errors", "uptime", "delay", "error", "timeline", "actions"]) {
      row.append(cells[key]);
    }
    entry.row = row;
    entry.cells = cells;
    $("rows").append(row);
  }

  function renderRow(entry) {
    if (!entry.row) buildRow(entry);
    const { info, cells } = entry;
    cells.name.textContent = info.name;
    cells.phase.replaceChildren(el("span", { className: `phase phase-${entry.phase}` }, entry.phase));
    cells.status.replaceChildren(el("span", { className: `status status-${info.status}` }, info.status));
    entry.row.dataset.status = info.status;
    entry.row.dataset.phase = entry.phase;
    cells.starts.textContent = info.start_count;
    cells.restarts.textContent = info.restart_count;
    cells.errors.textContent = info.error_count;
    cells.delay.textContent = info.current_delay;
    cells.delay.classList.toggle("waiting", entry.phase === "backoff");
    cells.error.textContent = info.last_error || "";
    cells.error.title = info.last_error ? `${info.last_error}\n${info.last_error_time}` : "";
    renderUptime(entry);
    renderActions(entry);
    drawTimeline(entry);
    if (entry.details) entry.details.querySelector("pre").textContent = JSON.stringify(info, null, 2);
  }

  function renderUptime(entry) {
    let seconds = entry.info.current_uptime / 1e9;
    if (seconds > 0 && IN_SERVE.has(entry.info.phase)) {
      seconds += now() - entry.at;
    }
    entry.cells.uptime.textContent = duration(seconds);
  }

  function renderActions(entry) {
    const { info } = entry;
    const active = LIVE.has(info.phase) && !info.stopped;
    const actions = active ? ["stop", "restart"] : ["start"];
    if (info.failed || info.restart_count > 0 || info.consec_failures > 0) actions.push("reset");
    actions.push("details");
    const key = actions.join(",");
    if (key === entry.actionsKey) return;
    entry.actionsKey = key;
    const buttons = actions.map((verb) => {
      const button = el("button", { type: "button", className: "action" }, verb[0].toUpperCase() + verb.slice(1));
      button.dataset.action = verb;
      button.addEventListener("click", () => (verb === "details" ? toggleDetails(entry) : act(entry.info.name, verb, button)));
      return button;
    });
    entry.cells.actions.replaceChildren(...buttons);
  }

  function toggleDetails(entry) {
    if (entry.details) {
      entry.details.remove();
      entry.details = null;
      return;
    }
    const row = el("tr", { className: "details" });
    const cell = el("td", { colSpan: 11 });
    cell.append(el("pre", {}, JSON.stringify(entry.info, null, 2)));
    row.append(cell);
    entry.row.after(row);
    entry.details = row;
  }

  // The strips span the last WINDOW seconds, or less while the history is shorter
  // (never under MIN_SPAN), so a young console still shows its restarts clearly.
  function span(end) {
    let first = end;
    for (const { points } of services.values()) if (points.length) first = Math.min(first, points[0][0]);
    return Math.min(WINDOW, Math.max(MIN_SPAN, end - first));
  }

  function drawTimeline(entry, width_) {
    const canvas = entry.cells.canvas;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    const end = now();
    const seconds = width_ || span(end);
    const start = end - seconds;
    const width = canvas.width;
    ctx.clearRect(0, 0, width, canvas.height);
    const points = entry.points;
    while (points.length > 2 && points[1][0] < end - WINDOW - 60) points.shift();
    for (let i = 0; i < points.length; i++) {
      const from = Math.max(points[i][0], start);
      const to = i + 1 < points.length ? points[i + 1][0] : end;
      if (to <= start) continue;
      const x0 = Math.floor(((from - start) / seconds) * width);
      const x1 = Math.max(x0 + 1, Math.ceil(((to - start) / seconds) * width));
      ctx.fillStyle = colour(points[i][1]);
      ctx.fillRect(x0, 0, x1 - x0, canvas.height);
    }
  }

  function renderCards() {
    let running = 0;
    let failing = 0;
    let restarts = 0;
    let errors = 0;
    for (const { info } of services.values()) {
      if (RUNNING.has(info.status)) running++;
      if (FAILING.has(info.status)) failing++;
      restarts += info.restart_count;
      errors += info.error_count;
    }
    $("card-total").textContent = services.size;
    $("card-running").textContent = running;
    $("card-failing").textContent = failing;
    $("card-restarts").textContent = restarts;
    $("card-errors").textContent = errors;
    $("empty").hidden = services.size > 0;
  }

  function setManager(name, state) {
    if (name !== undefined) {
      $("manager-name").textContent = name;
      document.title = `${name} · trisup console`;
    }
    const badge = $("manager-state");
    badge.textContent = state;
    badge.className = `badge state-${state}`;
  }

  function notice(text, isError) {
    const node = $("notice");
    node.textContent = text;
    node.className = isError ? "error" : "";
    node.hidden = false;
  }

  // ----------------------------------------------------------- the stream

  function applySnapshot(data) {
    skew = data.now * 1000 - Date.now();
    tokenRequired = Boolean(data.token_required);
    setManager(data.manager.name, data.manager.state);
    for (const name of [...services.keys()]) remove(name);
    for (const info of data.services) {
      const points = (data.timelines[info.name] || []).map(([ts, phase]) => [ts, phase]);
      upsert(info, data.phases[info.name]);
      const entry = services.get(info.name);
      if (points.length) entry.points = points;
      drawTimeline(entry);
    }
    renderCards();
  }

  function applyEvent(data) {
    const kind = data.kind;
    if (kind === "manager_started") setManager(undefined, "serving");
    else if (kind === "manager_stopping") setManager(undefined, "stopping");
    else if (kind === "manager_stopped") setManager(undefined, "stopped");
    if (data.service === undefined) return;
    if (kind === "removed" || data.info === null) {
      remove(data.service);
    } else if (data.info) {
      upsert(data.info, data.phase, data.ts);
    }
    renderCards();
  }

  function connect() {
    const source = new EventSource("api/events");
    const connection = $("connection");
    source.addEventListener("open", () => {
      connection.textContent = "live";
      connection.className = "connection up";
    });
    source.addEventListener("error", () => {
      connection.textContent = "reconnecting";
      connection.className = "connection down";
    });
    source.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
    source.addEventListener("message", (e) => applyEvent(JSON.parse(e.data)));
  }

  // ---------------------------------------------------------------- actions

  function post(url) {
    const token = sessionStorage.getItem("trisup-token") || "-";
    return fetch(url, {
      method: "POST",
      headers: { "X-Trisup-Token": token },
      cache: "no-store",
      credentials: "same-origin",
    });
  }

  async function act(name, verb, button) {
    const url = name === null ? "api/services/restart" : `api/service/${encodeURIComponent(name)}/${verb}`;
    if (button) button.disabled = true;
    try {
      let response = await post(url);
      if (response.status === 401 && tokenRequired) {
        const token = window.prompt("Token for this console");
        if (token) {
          sessionStorage.setItem("trisup-token", token);
          response = await post(url);
        }
      }
      const body = await response.json().catch(() => ({}));
      if (response.ok) notice(body.message || "done", false);
      else notice(body.error || `HTTP ${response.status}`, true);
      if (name !== null) await refresh(name);
    } catch (err) {
      notice(`request failed: ${err}`, true);
    } finally {
      if (button) button.disabled = false;
    }
  }

  async function refresh(name) {
    const response = await fetch(`api/service/${encodeURIComponent(name)}`, { cache: "no-store" });
    if (response.status === 404) {
      remove(name);
    } else if (response.ok) {
      upsert(await response.json());
    }
    renderCards();
  }

  // ------------------------------------------------------------------ start

  document.addEventListener("DOMContentLoaded", () => {
    $("restart-all").addEventListener("click", (e) => act(null, "restart", e.currentTarget));
    connect();
    setInterval(() => {
      const seconds = span(now());
      $("timeline-head").textContent = `Timeline, last ${duration(seconds)}`;
      for (const entry of services.values()) {
        renderUptime(entry);
        drawTimeline(entry, seconds);
      }
    }, 1000);
  });
})();
