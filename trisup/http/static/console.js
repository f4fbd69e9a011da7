// trisup console: a live view of a manager's tree, fed by server-sent events.
// Everything the server sends is inserted with textContent, never as markup.
//
// Rows are keyed by [group, name]: group "" is the root manager, "jobs" the services
// of its nested manager jobs, "jobs/sub" deeper. Events only mark rows dirty; one
// animation frame applies them, and the order (sort, filter, groups) is recomputed
// at most every ORDER_EVERY ms, or at once after a click.
(() => {
  "use strict";

  const WINDOW = 300; // seconds shown by a timeline strip at most
  const MIN_SPAN = 10; // seconds shown at least
  const ORDER_EVERY = 250; // ms between two re-sorts driven by events
  const FLUSH_EVERY = 100; // ms between two frames that apply events: "live" within 0.1 s
  const STRIP_EVERY = 250; // ms between two redraws of a strip driven by events
  const MAX_POINTS = 600; // phase changes kept per strip
  const MESSAGES = 5; // action messages kept
  const RUNNING = new Set(["running", "starting", "crashing"]);
  const FAILING = new Set(["crashing", "failed", "error"]);
  // the phases in which the service's task lives: it may be stopped or restarted
  const LIVE = new Set(["waiting_deps", "starting", "running", "stopping", "backoff", "group_wait"]);
  const IN_SERVE = new Set(["starting", "running", "stopping"]); // its uptime grows
  const FILTERS = {
    running: (e) => RUNNING.has(e.info.status),
    failing: (e) => FAILING.has(e.info.status),
    restarts: (e) => e.info.restart_count > 0,
    errors: (e) => e.info.error_count > 0,
  };
  const COLUMNS = ["name", "phase", "status", "starts", "restarts", "errors", "uptime", "delay", "error", "timeline", "actions"];
  const NUMERIC = new Set(["starts", "restarts", "errors", "uptime", "delay"]);
  const COLOURS = {};
  const collator = new Intl.Collator(undefined, { numeric: true });

  const services = new Map(); // key -> entry
  const groups = new Map(); // path -> {path, row, toggle, summary, text}
  const view = { filter: "", q: "", sort: "", dir: "asc", collapsed: new Set(), detail: null };
  let skew = 0; // server clock minus ours, in ms
  let tokenRequired = false;
  let self = null; // {group, name} of the console serving this page
  let offlineSince = null; // Date the stream went down, or null while live
  let order = []; // the rows in the table, in order
  let orderDirty = true;
  let orderTimer = 0;
  let frame = 0;
  let cardsDirty = true;
  const dirty = new Set(); // entries to render in the next frame
  const stripsDirty = new Set(); // strips to redraw within STRIP_EVERY
  let snapshots = 0;
  const visible = new Set(); // entries whose row is on screen: only these are kept current
  let observer = null;
  let stripWidth = 0; // the strips' width in CSS pixels, measured once per resize

  const $ = (id) => document.getElementById(id);
  const now = () => (Date.now() + skew) / 1000;
  const keyOf = (group, name) => `${group}\u0000${name}`;

  function el(tag, props, text) {
    const node = document.createElement(tag);
    if (props) for (const [key, value] of Object.entries(props)) node[key] = value;
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
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

  const pad = (n) => String(n).padStart(2, "0");
  // A wall-clock time (seconds since the epoch, the server's clock) as HH:MM:SS.
  function clock(ts) {
    const d = new Date(ts * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  // Go duration strings ("1.5s", "2m0s", "300ms") in seconds, for sorting.
  function goSeconds(text) {
    if (typeof text === "number") return text / 1e9;
    let total = 0;
    for (const [, n, unit] of String(text || "").matchAll(/([\d.]+)(h|m|s|ms|µs|us|ns)/g)) {
      total += Number(n) * { h: 3600, m: 60, s: 1, ms: 1e-3, "µs": 1e-6, us: 1e-6, ns: 1e-9 }[unit];
    }
    return total;
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

  // ------------------------------------------------------------ the URL

  function readURL() {
    const params = new URLSearchParams(location.search);
    const filter = params.get("filter") || "";
    view.filter = filter in FILTERS ? filter : "";
    view.q = params.get("q") || "";
    const sort = params.get("sort") || "";
    view.sort = COLUMNS.includes(sort) && sort !== "timeline" && sort !== "actions" ? sort : "";
    view.dir = params.get("dir") === "desc" ? "desc" : "asc";
    view.collapsed = new Set(params.getAll("collapsed"));
    const detail = params.get("detail");
    view.detail = detail === null ? null : keyOf(params.get("detail_group") || "", detail);
  }

  function writeURL() {
    const params = new URLSearchParams();
    if (view.filter) params.set("filter", view.filter);
    if (view.q) params.set("q", view.q);
    if (view.sort) {
      params.set("sort", view.sort);
      params.set("dir", view.dir);
    }
    for (const path of [...view.collapsed].sort()) params.append("collapsed", path);
    if (view.detail !== null) {
      const [group, name] = view.detail.split("\u0000");
      params.set("detail", name);
      if (group) params.set("detail_group", group);
    }
    const query = params.toString();
    history.replaceState(null, "", query ? `?${query}` : location.pathname);
  }

  // ------------------------------------------------------------ the rows

  // The one word shown for a service: "stopped" while stopped by hand, else its phase.
  function shownPhase(info) {
    return info.stopped ? "stopped" : info.phase;
  }

  function upsert(group, info, shown, ts, timeline, points) {
    const key = keyOf(group, info.name);
    let entry = services.get(key);
    const fresh = !entry;
    if (fresh) {
      entry = { key, group, name: info.name, info, shown: "", at: 0, points: [], row: null, cells: null };
      entry.actionsKey = "";
      services.set(key, entry);
      ensureGroup(group);
      orderDirty = true;
    }
    const before = entry.info;
    entry.info = info;
    const phase = shown || shownPhase(info);
    if (phase !== entry.shown || before.status !== info.status) orderDirty = true;
    else if (view.sort || view.filter === "restarts" || view.filter === "errors") orderDirty = true;
    entry.shown = phase;
    entry.at = now();
    if (timeline && timeline.length) {
      entry.points = timeline.length > MAX_POINTS ? timeline.slice(-MAX_POINTS) : timeline;
    } else {
      // the phases the stream's update went through, then the one it ends in
      for (const point of points || []) {
        const last = entry.points[entry.points.length - 1];
        if (!last || last[1] !== point[1]) entry.points.push(point);
      }
      const last = entry.points[entry.points.length - 1];
      if (!last || last[1] !== phase) entry.points.push([ts === undefined ? entry.at : ts, phase]);
      if (entry.points.length > MAX_POINTS) entry.points.splice(0, entry.points.length - MAX_POINTS);
    }
    // a row off screen is brought up to date when it scrolls in (see the observer)
    if (!entry.row || visible.has(entry) || entry.panel) dirty.add(entry);
    else entry.stale = true;
    cardsDirty = true;
    schedule();
  }

  function remove(key) {
    const entry = services.get(key);
    if (!entry) return;
    if (entry.panel) closeDetails(entry, false);
    if (entry.row) {
      if (observer) observer.unobserve(entry.row);
      entry.row.remove();
    }
    visible.delete(entry);
    dirty.delete(entry);
    services.delete(key);
    orderDirty = true;
    cardsDirty = true;
    schedule();
  }

  function buildRow(entry) {
    const row = el("div", { className: "row service" });
    row.setAttribute("role", "row");
    row.dataset.service = entry.name;
    row.dataset.group = entry.group;
    const cells = {};
    for (const column of COLUMNS) {
      cells[column] = el("div", { className: `cell col-${column}${NUMERIC.has(column) ? " num" : ""}` });
      cells[column].setAttribute("role", "cell");
      row.append(cells[column]);
    }
    cells.label = el("span", { className: "label" }, entry.name);
    cells.name.append(cells.label);
    cells.name.title = entry.group ? `${entry.group} / ${entry.name}` : entry.name;
    const depth = entry.group ? entry.group.split("/").length : 0;
    if (depth) cells.name.style.paddingLeft = `${10 + 16 * depth}px`;
    cells.phaseBadge = el("span", { className: "phase" });
    cells.phase.append(cells.phaseBadge);
    cells.statusBadge = el("span", { className: "status" });
    cells.status.append(cells.statusBadge);
    cells.canvas = el("canvas", { className: "timeline", width: 200, height: 14 });
    cells.timeline.append(cells.canvas);
    cells.canvas.addEventListener("mousemove", (e) => stripTip(entry, e));
    cells.canvas.addEventListener("mouseleave", hideTip);
    row.entry = entry;
    entry.row = row;
    entry.cells = cells;
    if (observer) observer.observe(row);
    else visible.add(entry);
  }

  function renderRow(entry) {
    if (!entry.row) buildRow(entry);
    entry.stale = false;
    const { info, cells, shown } = entry;
    if (cells.phaseBadge.dataset.phase !== shown) {
      cells.phaseBadge.dataset.phase = shown;
      cells.phaseBadge.className = `phase phase-${shown}`;
      cells.phaseBadge.textContent = shown;
    }
    if (cells.statusBadge.dataset.status !== info.status) {
      cells.statusBadge.dataset.status = info.status;
      cells.statusBadge.className = `status status-${info.status}`;
      cells.statusBadge.textContent = info.status;
    }
    if (entry.row.dataset.status !== info.status) entry.row.dataset.status = info.status;
    if (entry.row.dataset.phase !== shown) entry.row.dataset.phase = shown;
    setText(cells.starts, String(info.start_count));
    setText(cells.restarts, String(info.restart_count));
    setText(cells.errors, String(info.error_count));
    // quiet where nothing is wrong: a delay only while the service waits it out
    setText(cells.delay, shown === "backoff" ? String(info.current_delay) : "");
    const type = info.last_error_type;
    const error = info.last_error ? (type ? `${type}: ${info.last_error}` : info.last_error) : "";
    setText(cells.error, error);
    const when = info.last_error_time ? `\nat ${info.last_error_time}` : "";
    cells.error.title = error ? error + when : "";
    renderUptime(entry);
    renderActions(entry);
    if (visible.has(entry)) stripsDirty.add(entry);
    if (entry.panel && entry.panel.raw) entry.panel.raw.textContent = JSON.stringify(info, null, 2);
  }

  function renderUptime(entry) {
    const { info, cells } = entry;
    let seconds = info.current_uptime / 1e9;
    if (typeof info.current_uptime === "string") seconds = goSeconds(info.current_uptime);
    const growing = seconds > 0 && IN_SERVE.has(info.phase) && !info.stopped;
    if (growing) seconds += now() - entry.at;
    setText(cells.uptime, duration(seconds));
    cells.uptime.title = growing ? `up since ${clock(now() - seconds)}` : "";
  }

  function dependents(entry) {
    // everything in the same group that depends on entry, directly or not
    const found = [];
    const seen = new Set([entry.name]);
    const queue = [entry.name];
    while (queue.length) {
      const name = queue.shift();
      for (const other of services.values()) {
        if (other.group !== entry.group || seen.has(other.name)) continue;
        if ((other.info.depends_on || []).includes(name)) {
          seen.add(other.name);
          found.push(other.name);
          queue.push(other.name);
        }
      }
    }
    return found.sort(collator.compare);
  }

  const isSelf = (entry) => self !== null && self.group === entry.group && self.name === entry.name;

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
      if (verb !== "details") button.disabled = offlineSince !== null;
      button.addEventListener("click", () => (verb === "details" ? toggleDetails(entry) : guarded(entry, verb, button)));
      return button;
    });
    entry.cells.actions.replaceChildren(...buttons);
  }

  // ------------------------------------------------------------ details

  function detailsRow(entry) {
    const row = el("div", { className: "details" });
    row.dataset.service = entry.name;
    row.dataset.group = entry.group;
    const box = el("div", { className: "details-box" });
    row.append(box);
    const panel = { row, box, handle: null, raw: null };
    const api = window.TrisupDetails;
    if (api && typeof api.open === "function") {
      panel.handle = api.open(box, { group: entry.group, name: entry.name }, { disconnected: () => offlineSince !== null });
    } else {
      panel.raw = el("pre", { className: "raw" }, JSON.stringify(entry.info, null, 2));
      box.append(panel.raw);
    }
    return panel;
  }

  function openDetails(entry) {
    for (const other of services.values()) if (other.panel && other !== entry) closeDetails(other, false);
    if (!entry.row) buildRow(entry);
    entry.panel = detailsRow(entry);
    entry.row.after(entry.panel.row);
    entry.row.classList.add("open");
    view.detail = entry.key;
    orderDirty = true;
  }

  function closeDetails(entry, forget) {
    const panel = entry.panel;
    entry.panel = null;
    if (panel.handle && typeof panel.handle.close === "function") panel.handle.close();
    panel.row.remove();
    if (entry.row) entry.row.classList.remove("open");
    if (forget && view.detail === entry.key) view.detail = null;
  }

  function toggleDetails(entry) {
    if (entry.panel) closeDetails(entry, true);
    else openDetails(entry);
    writeURL();
    applyOrder();
  }

  // ------------------------------------------------------------ strips

  // The strips span the last WINDOW seconds, or less while the history is shorter
  // (never under MIN_SPAN), so a young console still shows its restarts clearly.
  let spanCache = { at: -1, seconds: MIN_SPAN };
  function span() {
    const end = now();
    if (end - spanCache.at < 1) return spanCache.seconds;
    let first = end;
    for (const { points } of services.values()) if (points.length && points[0][0] < first) first = points[0][0];
    spanCache = { at: end, seconds: Math.min(WINDOW, Math.max(MIN_SPAN, end - first)) };
    return spanCache.seconds;
  }

  function drawTimeline(entry) {
    const canvas = entry.cells.canvas;
    if (!stripWidth) stripWidth = Math.max(20, Math.round(canvas.clientWidth || 200));
    const width = stripWidth;
    if (canvas.width !== width) canvas.width = width;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    const end = now();
    const seconds = span();
    const start = end - seconds;
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

  function renderAxis() {
    const seconds = span();
    const axis = $("axis");
    const steps = [5, 10, 15, 30, 60, 120, 300];
    const step = steps.find((s) => seconds / s <= 4) || 300;
    const ticks = [];
    for (let t = step; t < seconds * 0.9; t += step) ticks.push(t);
    const label = (t) => (t % 60 === 0 ? `-${t / 60}m` : `-${t}s`);
    const key = `${step}:${ticks.length}:${Math.round(seconds)}`;
    if (axis.dataset.key === key) return;
    axis.dataset.key = key;
    const nodes = ticks.map((t) => {
      const tick = el("span", { className: "tick" }, label(t));
      tick.style.right = `${(t / seconds) * 100}%`;
      return tick;
    });
    const last = el("span", { className: "tick now" }, "now");
    axis.replaceChildren(...nodes, last);
    axis.title = `the last ${duration(seconds)}`;
  }

  function stripTip(entry, event) {
    const canvas = entry.cells.canvas;
    const rect = canvas.getBoundingClientRect();
    const seconds = span();
    const end = now();
    const at = end - seconds + ((event.clientX - rect.left) / rect.width) * seconds;
    const points = entry.points;
    let i = points.length - 1;
    while (i > 0 && points[i][0] > at) i--;
    const tip = $("tip");
    if (!points.length || points[0][0] > at) {
      tip.textContent = "no record yet";
    } else {
      const from = points[i][0];
      const to = i + 1 < points.length ? points[i + 1][0] : end;
      const length = Math.max(0, to - from);
      const shown = length < 10 ? `${length.toFixed(1)} s` : `${Math.round(length)} s`;
      const until = i + 1 < points.length ? clock(to) : "now";
      tip.textContent = `${clock(from)}–${until} ${points[i][1]} (${shown})`;
    }
    tip.hidden = false;
    tip.style.left = `${Math.min(event.clientX + 12, window.innerWidth - tip.offsetWidth - 8)}px`;
    tip.style.top = `${event.clientY + 16}px`;
  }

  function hideTip() {
    $("tip").hidden = true;
  }

  // ------------------------------------------------------------ groups, order

  function ensureGroup(path) {
    if (path === "" || groups.has(path)) return;
    const row = el("div", { className: "row group" });
    row.setAttribute("role", "row");
    row.dataset.group = path;
    const cell = el("div", { className: "cell" });
    cell.setAttribute("role", "cell");
    const toggle = el("button", { type: "button", className: "toggle" });
    const depth = path.split("/").length - 1;
    if (depth) cell.style.paddingLeft = `${10 + 16 * depth}px`;
    const title = el("span", { className: "group-name" }, path.split("/").pop());
    title.title = path;
    toggle.append(el("span", { className: "chevron" }), title);
    toggle.addEventListener("click", () => {
      if (view.collapsed.has(path)) view.collapsed.delete(path);
      else view.collapsed.add(path);
      writeURL();
      applyOrder();
    });
    const summary = el("span", { className: "summary" });
    cell.append(toggle, summary);
    row.append(cell);
    groups.set(path, { path, row, toggle, summary, text: "" });
    ensureGroup(path.split("/").slice(0, -1).join("/"));
  }

  function hiddenByGroup(path) {
    if (!path) return false;
    const parts = path.split("/");
    for (let i = 1; i <= parts.length; i++) if (view.collapsed.has(parts.slice(0, i).join("/"))) return true;
    return false;
  }

  function rank(entry) {
    const { info, shown } = entry;
    if (shown === "failed" || info.status === "failed" || info.status === "error") return 0;
    if (info.status === "crashing") return 1;
    if (shown === "backoff") return 2;
    return 3;
  }

  function sortValue(entry, column) {
    const { info } = entry;
    switch (column) {
      case "phase": return entry.shown;
      case "status": return info.status;
      case "starts": return info.start_count;
      case "restarts": return info.restart_count;
      case "errors": return info.error_count;
      case "uptime": return typeof info.current_uptime === "string" ? goSeconds(info.current_uptime) : info.current_uptime;
      case "delay": return entry.shown === "backoff" ? goSeconds(info.current_delay) : -1;
      case "error": return info.last_error || "";
      default: return entry.name;
    }
  }

  function compare(a, b) {
    if (view.sort) {
      const x = sortValue(a, view.sort);
      const y = sortValue(b, view.sort);
      const c = typeof x === "number" ? x - y : collator.compare(x, y);
      if (c) return view.dir === "desc" ? -c : c;
    } else {
      const c = rank(a) - rank(b);
      if (c) return c;
    }
    return collator.compare(a.name, b.name);
  }

  function matches(entry) {
    if (view.filter && !FILTERS[view.filter](entry)) return false;
    return !view.q || entry.name.toLowerCase().includes(view.q.toLowerCase());
  }

  function groupPaths() {
    return [...groups.keys()].sort((a, b) => {
      const x = a.split("/");
      const y = b.split("/");
      for (let i = 0; i < Math.min(x.length, y.length); i++) {
        const c = collator.compare(x[i], y[i]);
        if (c) return c;
      }
      return x.length - y.length;
    });
  }

  // Recompute which rows show and in which order; move rows only if it changed.
  function applyOrder() {
    clearTimeout(orderTimer);
    orderTimer = 0;
    orderDirty = false;
    const byGroup = new Map([["", []]]);
    for (const path of groups.keys()) byGroup.set(path, []);
    for (const entry of services.values()) byGroup.get(entry.group).push(entry);
    const rows = [];
    let shownCount = 0;
    const place = (path) => {
      const list = byGroup.get(path);
      list.sort(compare);
      const collapsed = hiddenByGroup(path);
      for (const entry of list) {
        if (!entry.row) renderRow(entry);
        const show = !collapsed && matches(entry);
        if (entry.row.hidden === show) entry.row.hidden = !show;
        if (show) shownCount++;
        rows.push(entry.row);
        if (entry.panel) {
          entry.panel.row.hidden = !show;
          rows.push(entry.panel.row);
        }
      }
    };
    place("");
    for (const path of groupPaths()) {
      const group = groups.get(path);
      const parentCollapsed = hiddenByGroup(path.split("/").slice(0, -1).join("/"));
      const anyMatch = !view.filter && !view.q ? true : byGroup.get(path).some(matches) || hasMatchBelow(path, byGroup);
      group.row.hidden = parentCollapsed || !anyMatch;
      const open = !view.collapsed.has(path);
      group.toggle.setAttribute("aria-expanded", String(open));
      group.row.classList.toggle("collapsed", !open);
      rows.push(group.row);
      place(path);
    }
    const tbody = $("rows");
    const same = rows.length === order.length && rows.every((row, i) => row === order[i]);
    if (!same) {
      tbody.replaceChildren(...rows);
      order = rows;
    }
    renderGroups();
    $("empty").hidden = services.size > 0;
    $("no-match").hidden = services.size === 0 || shownCount > 0;
    renderViewControls();
  }

  function hasMatchBelow(path, byGroup) {
    for (const [other, list] of byGroup) if (other.startsWith(`${path}/`) && list.some(matches)) return true;
    return false;
  }

  function scheduleOrder() {
    if (!orderTimer) orderTimer = setTimeout(applyOrder, ORDER_EVERY);
  }

  function renderGroups() {
    const counts = new Map();
    for (const entry of services.values()) {
      if (!entry.group) continue;
      let c = counts.get(entry.group);
      if (!c) counts.set(entry.group, (c = { total: 0, failing: 0, running: 0, stopped: 0 }));
      c.total++;
      if (FAILING.has(entry.info.status)) c.failing++;
      if (RUNNING.has(entry.info.status)) c.running++;
      if (entry.info.status === "stopped") c.stopped++;
    }
    for (const group of groups.values()) {
      const c = counts.get(group.path) || { total: 0, failing: 0, running: 0, stopped: 0 };
      const parts = [`${c.total} service${c.total === 1 ? "" : "s"}`];
      if (c.failing) parts.push(`${c.failing} failing`);
      if (c.running) parts.push(`${c.running} running`);
      if (c.stopped) parts.push(`${c.stopped} stopped`);
      const text = parts.join(" · ");
      if (text !== group.text) {
        group.text = text;
        group.summary.textContent = text;
      }
      group.row.classList.toggle("bad", c.failing > 0);
    }
  }

  function renderViewControls() {
    for (const card of document.querySelectorAll("#cards .card")) {
      const active = (card.dataset.filter || "") === view.filter;
      card.classList.toggle("active", active);
      card.setAttribute("aria-pressed", String(active));
    }
    for (const th of document.querySelectorAll("#services .head [data-sort]")) {
      const column = th.dataset.sort;
      if (column === view.sort) th.setAttribute("aria-sort", view.dir === "desc" ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    }
    const search = $("search");
    if (search.value !== view.q && document.activeElement !== search) search.value = view.q;
  }

  // ------------------------------------------------------------ the frame

  let lastFlush = 0;
  function schedule() {
    if (frame) return;
    const wait = lastFlush + FLUSH_EVERY - performance.now();
    if (wait > 0) frame = setTimeout(() => (frame = requestAnimationFrame(flush)), wait);
    else frame = requestAnimationFrame(flush);
  }

  function flush() {
    frame = 0;
    lastFlush = performance.now();
    for (const entry of dirty) renderRow(entry);
    dirty.clear();
    if (cardsDirty) {
      cardsDirty = false;
      renderCards();
    }
    if (orderDirty) {
      if (!order.length) applyOrder();
      else scheduleOrder();
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
    setText($("card-total"), String(services.size));
    setText($("card-running"), String(running));
    setText($("card-failing"), String(failing));
    setText($("card-restarts"), String(restarts));
    setText($("card-errors"), String(errors));
    if (!order.length) $("empty").hidden = services.size > 0;
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

  // ------------------------------------------------------------ connection

  function setOffline(down) {
    const connection = $("connection");
    connection.textContent = down ? "disconnected" : "live";
    connection.className = `connection ${down ? "down" : "up"}`;
    if (down === (offlineSince !== null)) return;
    offlineSince = down ? new Date() : null;
    document.body.classList.toggle("offline", down);
    const banner = $("offline");
    banner.hidden = !down;
    if (down) {
      const d = offlineSince;
      banner.textContent = `Disconnected since ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}, retrying`;
    }
    for (const button of document.querySelectorAll("button.action:not([data-action=details])")) button.disabled = down;
    $("restart-all").disabled = down;
  }

  function applySnapshot(data) {
    document.body.dataset.snapshots = String(++snapshots);
    skew = data.now * 1000 - Date.now();
    tokenRequired = Boolean(data.token_required);
    self = data.self || null;
    setManager(data.manager.name, data.manager.state);
    const seen = new Set();
    const phases = data.phases || {};
    const timelines = data.timelines || {};
    for (const raw of data.services) {
      const { group: g, shown, timeline, ...info } = raw;
      const group = g || "";
      seen.add(keyOf(group, info.name));
      upsert(group, info, shown || phases[info.name], undefined, timeline || timelines[info.name]);
    }
    for (const key of [...services.keys()]) if (!seen.has(key)) remove(key);
    for (const [path, group] of [...groups]) {
      let used = false;
      for (const entry of services.values()) if (entry.group === path || entry.group.startsWith(`${path}/`)) used = true;
      if (!used) {
        group.row.remove();
        groups.delete(path);
      }
    }
    if (view.detail !== null && !services.get(view.detail)?.panel && services.has(view.detail)) {
      openDetails(services.get(view.detail));
    }
    setOffline(false);
    applyOrder();
  }

  function applyEvent(data) {
    const kind = data.kind;
    const group = data.group || "";
    if (group === "") {
      if (kind === "manager_started") setManager(undefined, "serving");
      else if (kind === "manager_stopping") setManager(undefined, "stopping");
      else if (kind === "manager_stopped") setManager(undefined, "stopped");
    }
    if (data.service === undefined) return;
    // one message per service and write: its latest info, shown phase and the points it went through
    if (kind === "removed" || data.info === null) {
      remove(keyOf(group, data.service));
    } else if (data.info) {
      upsert(group, data.info, data.shown, data.ts, undefined, data.points);
    }
  }

  let source = null;
  function connect() {
    source = new EventSource("api/events");
    // live once the snapshot is in (applySnapshot), not at "open": the old rows are stale
    source.addEventListener("error", () => {
      setOffline(true);
      if (source.readyState === EventSource.CLOSED) {
        // an answer other than a stream (503, 404) ends EventSource's own retries
        source = null;
        setTimeout(connect, 2000);
      }
    });
    source.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
    source.addEventListener("message", (e) => applyEvent(JSON.parse(e.data)));
  }

  // ------------------------------------------------------------ messages

  function say(text, isError) {
    const list = $("messages");
    const item = el("li", { className: isError ? "error" : "ok" });
    item.append(el("time", {}, clock(now())), document.createTextNode(` ${text}`));
    item.dataset.text = text;
    list.prepend(item);
    while (list.children.length > MESSAGES) list.lastElementChild.remove();
    list.hidden = false;
  }

  // ------------------------------------------------------------ actions

  function post(url) {
    const token = sessionStorage.getItem("trisup-token") || "-";
    return fetch(url, {
      method: "POST",
      headers: { "X-Trisup-Token": token },
      cache: "no-store",
      credentials: "same-origin",
    });
  }

  const groupQuery = (group) => (group ? `?group=${encodeURIComponent(group)}` : "");
  const label = (entry) => (entry.group ? `${entry.group}/${entry.name}` : entry.name);

  // Ask first where the action reaches further than its row.
  async function guarded(entry, verb, button) {
    let question = null;
    if (verb === "stop" || verb === "restart") {
      const deps = dependents(entry);
      const lines = [];
      if (isSelf(entry)) {
        lines.push(
          verb === "stop"
            ? `Stopping ${entry.name} ends this page's connection: the console stops serving and cannot be started from this page.`
            : `Restarting ${entry.name} drops this page's connection until it is back.`,
        );
      }
      if (deps.length) {
        lines.push(
          verb === "restart"
            ? `Its dependents restart with it: ${deps.join(", ")}.`
            : `These depend on it and may fail while it is stopped: ${deps.join(", ")}.`,
        );
      }
      if (lines.length) {
        question = {
          title: `${verb === "stop" ? "Stop" : "Restart"} ${label(entry)}?`,
          text: lines.join(" "),
          items: deps,
          confirm: verb === "stop" ? `Stop ${entry.name}` : `Restart ${entry.name}`,
        };
      }
    }
    if (question && !(await ask(question))) return;
    await act(entry, verb, button);
  }

  async function restartAll(button) {
    const names = [...services.values()].filter((e) => e.group === "").map((e) => e.name).sort(collator.compare);
    const console_ = self && self.group === "" ? self.name : null;
    const lines = ["Every service of this manager restarts, with the services of nested managers inside it."];
    if (console_ !== null) lines.push(`The console (${console_}) restarts last: this page reconnects when it is back.`);
    const ok = await ask({
      title: `Restart all ${names.length} services?`,
      text: lines.join(" "),
      items: names,
      confirm: "Restart all",
    });
    if (ok) await act(null, "restart", button);
  }

  let answer = null;
  function ask({ title, text, items, confirm }) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-list").replaceChildren(...items.map((name) => el("li", {}, name)));
    $("confirm-list").hidden = items.length === 0;
    $("confirm-ok").textContent = confirm;
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => {
      answer = resolve;
    });
  }

  async function act(entry, verb, button) {
    const name = entry === null ? null : entry.name;
    const url = entry === null ? "api/services/restart" : `api/service/${encodeURIComponent(name)}/${verb}${groupQuery(entry.group)}`;
    const what = entry === null ? "restart of all services" : `${verb} of ${label(entry)}`;
    if (button) button.disabled = true;
    let response;
    try {
      response = await post(url);
      if (response.status === 401 && tokenRequired) {
        const token = window.prompt("Token for this console");
        if (token) {
          sessionStorage.setItem("trisup-token", token);
          response = await post(url);
        }
      }
    } catch (err) {
      say(`${what} failed: console unreachable`, true);
      if (button) button.disabled = offlineSince !== null;
      return;
    }
    const body = await response.json().catch(() => ({}));
    if (response.ok) say(body.message || `${what} done`, false);
    else say(`${what} failed: HTTP ${response.status} ${body.error || response.statusText}`.trim(), true);
    if (button) button.disabled = offlineSince !== null;
    if (entry !== null) refresh(entry).catch(() => {}); // the stream catches up anyway
  }

  async function refresh(entry) {
    const response = await fetch(`api/service/${encodeURIComponent(entry.name)}${groupQuery(entry.group)}`, { cache: "no-store" });
    if (response.status === 404) remove(entry.key);
    else if (response.ok) upsert(entry.group, await response.json());
  }

  // ------------------------------------------------------------ start

  function setView(change) {
    Object.assign(view, change);
    writeURL();
    applyOrder();
  }

  document.addEventListener("DOMContentLoaded", () => {
    readURL();
    $("search").value = view.q;
    $("restart-all").addEventListener("click", (e) => restartAll(e.currentTarget));
    for (const card of document.querySelectorAll("#cards .card")) {
      card.addEventListener("click", () => {
        const filter = card.dataset.filter || "";
        setView({ filter: view.filter === filter ? "" : filter });
      });
    }
    $("search").addEventListener("input", (e) => setView({ q: e.currentTarget.value }));
    for (const th of document.querySelectorAll("#services .head [data-sort]")) {
      th.querySelector("button").addEventListener("click", () => {
        const column = th.dataset.sort;
        if (view.sort === column) setView({ dir: view.dir === "asc" ? "desc" : "asc" });
        else setView({ sort: column, dir: NUMERIC.has(column) ? "desc" : "asc" });
      });
    }
    $("sort-default").addEventListener("click", () => setView({ sort: "", dir: "asc" }));
    const dialog = $("confirm");
    dialog.addEventListener("close", () => {
      const resolve = answer;
      answer = null;
      if (resolve) resolve(dialog.returnValue === "ok");
    });
    if ("IntersectionObserver" in window) {
      observer = new IntersectionObserver((items) => {
        for (const item of items) {
          const entry = item.target.entry;
          if (!entry) continue;
          if (item.isIntersecting) {
            visible.add(entry);
            if (entry.stale) dirty.add(entry);
            else drawTimeline(entry);
            schedule();
          } else visible.delete(entry);
        }
      }, { rootMargin: "200px 0px" }); // rows about to scroll in are current already
    }
    window.addEventListener("resize", () => {
      stripWidth = 0;
    });
    connect();
    setInterval(() => {
      for (const entry of stripsDirty) if (visible.has(entry)) drawTimeline(entry);
      stripsDirty.clear();
    }, STRIP_EVERY);
    setInterval(() => {
      stripsDirty.clear();
      renderAxis();
      for (const entry of visible) {
        renderUptime(entry);
        drawTimeline(entry);
      }
    }, 1000);
    renderAxis();
  });
})();
