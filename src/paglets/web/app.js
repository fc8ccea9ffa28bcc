// The paglets dashboard: one plain ES module, no build step, nothing loaded from elsewhere.
//
// The page is served at /ui/ (and, for logging in, at /ui/login) by every host. It reads
// the host's own HTTP API with the session cookie the login set (HttpOnly: this script
// never sees it, and the mesh key is never kept or put in a URL). Paging and search happen
// on the server, so a host with 100,000 paglets sends one page at a time.
//
// Every piece of data is put into the page as text (textContent), never as HTML.

const API = new URL("../", location.href); // the host's API root, also behind a path prefix
const PAGE = 50;
const state = { session: null, csrf: null, cleanup: null };

// -- small helpers -----------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function when(seconds) {
  if (!seconds) return "";
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

function bytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

function short(text, n = 12) {
  text = String(text ?? "");
  return text.length > n ? text.slice(0, n) + "…" : text;
}

function scalar(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function table(columns, rows, attrs = {}) {
  const head = el("tr", {}, columns.map((c) => el("th", { text: c.title })));
  const body = rows.map((row) =>
    el(
      "tr",
      attrs.rowAttrs ? attrs.rowAttrs(row) : {},
      columns.map((c) => {
        const value = c.get(row);
        return el("td", { class: c.class }, value instanceof Node ? value : scalar(value));
      }),
    ),
  );
  return el("table", { id: attrs.id, class: "grid" }, el("thead", {}, head), el("tbody", {}, body));
}

function keyValues(pairs, id) {
  return el(
    "dl",
    { class: "kv", id },
    pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v instanceof Node ? v : scalar(v))]),
  );
}

function notice(text, kind = "info") {
  return el("p", { class: `notice notice-${kind}`, text });
}

function badge(text, kind) {
  return el("span", { class: `badge badge-${kind || text}`, text });
}

function hashParams() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  return { path: path || "mesh", params: new URLSearchParams(query || "") };
}

function setHash(path, params) {
  const query = params ? params.toString() : "";
  location.hash = `#/${path}${query ? "?" + query : ""}`;
}

// -- talking to the host -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-Paglets-CSRF"] = state.csrf;
  const response = await fetch(new URL(path, API), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) data = await response.json();
  if (response.status === 401 && !path.startsWith("ui/login")) {
    toLogin();
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function toLogin() {
  location.replace(new URL("ui/login", API));
}

function unavailable(error) {
  return error instanceof ApiError && error.status === 404 && error.body.code === "no-route";
}

// Re-run `load` every `seconds` while the view is shown; returns the stopper.
function every(seconds, load) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try {
      await load();
    } finally {
      if (!stopped) timer = setTimeout(tick, seconds * 1000);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function errorBox(error) {
  if (error instanceof ApiError) {
    const hint = error.body.hint ? ` (${error.body.hint})` : "";
    return notice(`${error.message}${hint}`, "error");
  }
  return notice(String(error), "error");
}

// -- login ---------------------------------------------------------------------------------

function loginView(main) {
  const error = el("p", { id: "login-error", class: "notice notice-error", role: "alert", hidden: true });
  const key = el("input", {
    id: "key",
    name: "key",
    type: "password",
    autocomplete: "current-password",
    required: true,
    autofocus: true,
  });
  const form = el(
    "form",
    { id: "login-form", class: "login" },
    el("h1", { text: "paglets dashboard" }),
    el("label", { for: "key", text: "Mesh key" }),
    key,
    el("button", { id: "login-button", type: "submit", text: "Log in" }),
    error,
    el("p", {
      class: "help",
      text:
        "The key every host of this mesh shares (PAGLETS_API_KEY or ~/.paglets/mesh.key). " +
        "It is checked once; this browser then holds a session cookie, never the key.",
    }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      await api("ui/login", { method: "POST", body: { key: key.value } });
      // A redirect to the login page kept the view asked for (#/paglet/...): go there.
      location.replace(new URL("ui/" + location.hash, API));
    } catch (e) {
      key.value = "";
      error.hidden = false;
      if (e instanceof ApiError && e.status === 401) {
        error.textContent = "That key was not accepted. Every host of a mesh uses the same key.";
      } else if (e instanceof ApiError && e.status === 429) {
        error.textContent = "Too many wrong keys from this address; wait a minute and try again.";
      } else {
        error.textContent = `Login failed: ${e.message}`;
      }
    }
  });
  main.replaceChildren(form);
}

// -- mesh ----------------------------------------------------------------------------------

function loadText(member) {
  const load = member.resources && member.resources.load;
  if (!load || typeof load !== "object") return "";
  const parts = [];
  for (const [k, v] of Object.entries(load)) {
    if (k === "active_count" || k === "inactive_count") continue; // the Paglets column
    if (typeof v === "number" && k.endsWith("_bytes")) parts.push(`${k.replace(/_bytes$/, "")} ${bytes(v)}`);
    else if (typeof v === "number" || typeof v === "string") parts.push(`${k} ${v}`);
    if (parts.length >= 6) break;
  }
  return parts.join(", ");
}

function counts(member) {
  const h = member.health;
  const active = h ? h.active_count : member.active_count;
  const inactive = h ? h.inactive_count : member.inactive_count;
  if (active === undefined && inactive === undefined) return "";
  return `${active ?? 0} active / ${inactive ?? 0} inactive`;
}

function meshView(main) {
  const body = el("div");
  main.replaceChildren(el("h2", { text: "Mesh members" }), body);
  return every(5, async () => {
    let data;
    try {
      data = await api("ui/api/mesh");
    } catch (e) {
      body.replaceChildren(errorBox(e));
      return;
    }
    const own = data.code_version;
    const columns = [
      {
        title: "Host",
        get: (m) =>
          el(
            "span",
            {},
            m.self ? el("strong", { text: m.name }) : el("a", { href: new URL("ui/", m.url + "/").href, text: m.name }),
            m.self ? " (this host)" : "",
          ),
      },
      {
        title: "Status",
        get: (m) => el("span", { title: m.incompatible_reason || "" }, badge(m.status || "unknown")),
      },
      {
        title: "Version",
        get: (m) => {
          const differs = m.code_version && m.code_version !== own;
          return el(
            "span",
            { class: differs || m.status === "incompatible" ? "flag" : "" },
            m.code_version || "",
            differs ? " ≠ this host" : "",
          );
        },
      },
      { title: "paglets", get: (m) => m.paglets_version || (m.health && m.health.paglets_version) || "" },
      { title: "Tags", get: (m) => (m.tags || []).join(", ") },
      { title: "Paglets", get: counts },
      { title: "Load", get: loadText },
      { title: "RTT", get: (m) => (m.rtt_ms === null || m.rtt_ms === undefined ? "" : `${m.rtt_ms.toFixed(1)} ms`) },
      { title: "Problem", class: "problem", get: (m) => m.incompatible_reason || m.health_error || "" },
    ];
    const members = data.members || [];
    const incompatible = members.filter((m) => m.status === "incompatible").length;
    body.replaceChildren(
      el("p", { class: "summary", text: `${members.length} hosts` + (incompatible ? `, ${incompatible} incompatible` : "") }),
      table(columns, members, {
        id: "members",
        rowAttrs: (m) => ({ "data-name": m.name, class: m.status === "incompatible" ? "incompatible" : "" }),
      }),
    );
  });
}

// -- paglets -------------------------------------------------------------------------------

function stateOf(summary) {
  if (summary.crashed) return "crashed";
  return summary.active ? "active" : "inactive";
}

function pagletsView(main, params) {
  const q = params.get("q") || "";
  const which = params.get("state") || "all";
  const cls = params.get("class") || "";
  const offset = Math.max(0, Number(params.get("offset") || 0));
  const search = el("input", { id: "search", type: "search", value: q, placeholder: "id or class contains…" });
  const select = el(
    "select",
    { id: "state" },
    ["all", "active", "inactive", "crashed"].map((s) => el("option", { value: s, selected: s === which, text: s })),
  );
  const classInput = el("input", { id: "class", type: "text", value: cls, placeholder: "module:Class (exact)" });
  const form = el(
    "form",
    { id: "paglet-search", class: "toolbar" },
    search,
    select,
    classInput,
    el("button", { type: "submit", text: "Search" }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (search.value.trim()) next.set("q", search.value.trim());
    if (select.value !== "all") next.set("state", select.value);
    if (classInput.value.trim()) next.set("class", classInput.value.trim());
    setHash("paglets", next);
  });
  const body = el("div");
  main.replaceChildren(el("h2", { text: "Paglets" }), form, body);
  return every(10, async () => {
    const query = new URLSearchParams({ state: which, limit: String(PAGE), offset: String(offset) });
    if (q) query.set("q", q);
    if (cls) query.set("class", cls);
    let page;
    try {
      page = await api(`agents?${query}`);
    } catch (e) {
      body.replaceChildren(errorBox(e));
      return;
    }
    const agents = page.agents || [];
    const total = page.total ?? agents.length;
    const move = (to) => {
      const next = new URLSearchParams(params);
      next.set("offset", String(Math.max(0, to)));
      setHash("paglets", next);
    };
    const columns = [
      { title: "Paglet", get: (a) => el("a", { href: `#/paglet/${encodeURIComponent(a.agent_id)}`, text: a.agent_id }) },
      { title: "Class", get: (a) => a.class_name },
      { title: "State", get: (a) => badge(stateOf(a)) },
      { title: "Host", get: (a) => a.host },
    ];
    body.replaceChildren(
      agents.length ? table(columns, agents, { id: "paglets", rowAttrs: (a) => ({ "data-id": a.agent_id }) }) : notice("No paglet matches."),
      el(
        "div",
        { class: "pager" },
        el("button", { id: "prev", type: "button", disabled: offset === 0, onclick: () => move(offset - PAGE), text: "‹ Previous" }),
        el("span", {
          id: "page-info",
          text: total ? `${offset + 1}–${offset + agents.length} of ${total}` : "0 of 0",
        }),
        el("button", {
          id: "next",
          type: "button",
          disabled: !page.next_cursor,
          onclick: () => move(offset + PAGE),
          text: "Next ›",
        }),
      ),
    );
  });
}

function pagletView(main, _params, agentId) {
  const body = el("div");
  main.replaceChildren(
    el("h2", {}, "Paglet ", el("code", { id: "paglet-id", text: agentId })),
    el("p", {}, el("a", { href: `#/events?agent_id=${encodeURIComponent(agentId)}`, text: "Live events of this paglet on this host" })),
    body,
  );
  return every(3, async () => {
    let d;
    try {
      d = await api(`ui/api/paglets/${encodeURIComponent(agentId)}`);
    } catch (e) {
      body.replaceChildren(errorBox(e));
      return;
    }
    const loc = d.location || {};
    const s = d.summary;
    const parts = [
      el("h3", { text: "Location" }),
      keyValues(
        [
          ["State", badge(loc.state || "unknown")],
          ["Host", el("span", { id: "paglet-host", text: loc.host_name || "" })],
          ["URL", loc.host_url || ""],
          ["Epoch", loc.epoch ?? ""],
          ["Known from", loc.source || ""],
        ],
        "paglet-location",
      ),
    ];
    if (s) {
      parts.push(
        el("h3", { text: "Summary" }),
        keyValues(
          [
            ["Class", s.class_name],
            ["State class", s.state_class_name],
            ["State", badge(stateOf(s))],
            ["Isolation", s.isolation],
            ["Home", s.home_url],
            ["Created", when(s.created_at)],
            ["Checkpointed", when(s.checkpointed_at)],
            ["Error", s.error || s.run_error || ""],
          ],
          "paglet-summary",
        ),
      );
    }
    if (d.mailbox) {
      const m = d.mailbox;
      parts.push(
        el("h3", { text: "Mailbox" }),
        keyValues(
          [
            ["Queued", m.queued],
            ["Running", m.in_flight],
            ["Delivered", m.delivered],
            ["Failed", m.failed],
            ["Held (inactive)", m.held],
          ],
          "paglet-mailbox",
        ),
      );
    }
    const eventColumns = [
      { title: "Time", get: (e) => when(e.timestamp) },
      { title: "Host", get: (e) => e.host_name },
      { title: "Kind", get: (e) => e.kind },
      { title: "Detail", get: (e) => e.error || scalar(e.data && Object.keys(e.data).length ? e.data : "") },
    ];
    parts.push(
      el("h3", { text: "Location history" }),
      d.history && d.history.length ? table(eventColumns, d.history, { id: "history" }) : notice("No moves recorded."),
      el("h3", { text: `Events (${d.events_total ?? 0} on ${(d.hosts_asked || []).length} hosts)` }),
      d.events && d.events.length ? table(eventColumns, [...d.events].reverse(), { id: "paglet-events" }) : notice("No events."),
    );
    for (const problem of d.errors || []) parts.push(notice(problem, "error"));
    body.replaceChildren(...parts);
  });
}

// -- jobs and groups (served by hosts that run the compute-slots scheduler) -------------------

function genericTable(rows, id) {
  const keys = [];
  for (const row of rows.slice(0, 20)) {
    for (const [k, v] of Object.entries(row)) {
      if (!keys.includes(k) && (v === null || typeof v !== "object")) keys.push(k);
    }
  }
  return table(
    keys.slice(0, 10).map((k) => ({ title: k, get: (r) => r[k] })),
    rows,
    { id },
  );
}

function notAvailable(what) {
  return notice(`${what} are not available on this host (it does not run the jobs system).`, "muted");
}

function jobsView(main) {
  const jobs = el("div");
  const queue = el("div");
  main.replaceChildren(el("h2", { text: "Jobs" }), jobs, el("h2", { text: "Queue and leases" }), queue);
  return every(5, async () => {
    try {
      const data = await api(`jobs?limit=${PAGE}`);
      const rows = data.jobs || data.rows || [];
      jobs.replaceChildren(rows.length ? genericTable(rows, "jobs") : notice("No jobs."));
    } catch (e) {
      jobs.replaceChildren(unavailable(e) ? notAvailable("Jobs") : errorBox(e));
    }
    try {
      const data = await api("jobs/queue");
      const rows = [...(data.queue || []), ...(data.leases || [])];
      queue.replaceChildren(rows.length ? genericTable(rows, "queue") : notice("Nothing queued."));
    } catch (e) {
      queue.replaceChildren(unavailable(e) ? notAvailable("Queues") : errorBox(e));
    }
  });
}

function progress(group) {
  const expected = Number(group.expected || 0);
  const done = Number(group.done || 0);
  const failed = Number(group.failed || 0);
  const cancelled = Number(group.cancelled || 0);
  const finished = done + failed + cancelled;
  const pct = expected ? Math.min(100, Math.round((100 * finished) / expected)) : 0;
  // Widths through the CSSOM: the page's CSP allows no inline style attributes.
  const bar = (kind, n) => {
    const node = el("div", { class: `bar ${kind}` });
    node.style.width = `${expected ? Math.min(100, (100 * n) / expected) : 0}%`;
    return node;
  };
  return el(
    "div",
    { class: "progress", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 },
    bar("done", done),
    bar("failed", failed + cancelled),
    el("span", { class: "label", text: `${finished}/${expected} (${pct}%)` }),
  );
}

function groupsView(main) {
  const body = el("div");
  main.replaceChildren(el("h2", { text: "Job groups" }), body);
  return every(3, async () => {
    try {
      const data = await api("jobs/groups");
      const groups = data.groups || [];
      const columns = [
        { title: "Group", get: (g) => g.group_id || g.name || "" },
        { title: "Status", get: (g) => badge(String(g.status || "").toLowerCase() || "unknown") },
        { title: "Progress", get: progress },
        { title: "Running", get: (g) => g.running ?? "" },
        { title: "Waiting", get: (g) => g.waiting ?? "" },
        { title: "Failed", get: (g) => g.failed ?? "" },
        { title: "Collector", get: (g) => g.collector_host || "" },
      ];
      body.replaceChildren(
        groups.length ? table(columns, groups, { id: "groups", rowAttrs: (g) => ({ "data-group": g.group_id }) }) : notice("No job groups."),
      );
    } catch (e) {
      body.replaceChildren(unavailable(e) ? notAvailable("Job groups") : errorBox(e));
    }
  });
}

// -- artifacts -----------------------------------------------------------------------------

function artifactsView(main, params) {
  const cursor = params.get("cursor") || "";
  const body = el("div");
  main.replaceChildren(el("h2", { text: "Artifacts" }), body);
  return every(10, async () => {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (cursor) query.set("cursor", cursor);
    let data;
    try {
      data = await api(`artifacts?${query}`);
    } catch (e) {
      body.replaceChildren(unavailable(e) ? notAvailable("Artifacts") : errorBox(e));
      return;
    }
    const rows = data.artifacts || [];
    const columns = [
      { title: "Name", get: (a) => a.name },
      { title: "Size", get: (a) => bytes(a.size_bytes) },
      { title: "SHA-256", get: (a) => el("code", { title: a.sha256, text: short(a.sha256) }) },
      { title: "Owner", get: (a) => a.owner_agent_id || "" },
      { title: "Created", get: (a) => when(a.created_at) },
      { title: "Expires", get: (a) => when(a.expires_at) },
      {
        title: "",
        get: (a) =>
          el("a", {
            href: new URL(`artifacts/${encodeURIComponent(a.artifact_id)}`, API).href,
            download: a.name || a.artifact_id,
            text: "Download",
          }),
      },
    ];
    const pager = el("div", { class: "pager" });
    if (cursor) pager.append(el("button", { type: "button", onclick: () => setHash("artifacts"), text: "« First" }));
    if (data.next_cursor) {
      pager.append(
        el("button", {
          type: "button",
          onclick: () => setHash("artifacts", new URLSearchParams({ cursor: data.next_cursor })),
          text: "Next ›",
        }),
      );
    }
    body.replaceChildren(rows.length ? table(columns, rows, { id: "artifacts" }) : notice("No artifacts on this host."), pager);
  });
}

// -- live events ---------------------------------------------------------------------------

const KNOWN_KINDS = [
  "create", "dispose", "dispatch", "retract", "clone", "arrival", "deactivate", "activate",
  "message-queued", "message-delivered", "message-failed", "transfer-prepared",
  "transfer-resolved", "transfer-aborted", "arrival-aborted", "paglet-crashed",
  "paglet-restarted", "paglet-superseded", "run-failed", "hook-failed", "activation-failed",
  "checkpoint-failed", "context-start", "context-shutdown", "member-left", "host-draining",
  "git-update", "event-listener-failed", "member-joined", "member-updated", "member-suspect",
  "member-alive", "member-dead",
];

function eventsView(main, params) {
  const kind = params.get("kind") || "";
  const agent = params.get("agent_id") || "";
  const kindInput = el("input", { id: "event-kind", type: "text", value: kind, placeholder: "kind, kind…" });
  const agentInput = el("input", { id: "event-agent", type: "text", value: agent, placeholder: "paglet id" });
  const form = el("form", { class: "toolbar" }, kindInput, agentInput, el("button", { type: "submit", text: "Filter" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (kindInput.value.trim()) next.set("kind", kindInput.value.trim());
    if (agentInput.value.trim()) next.set("agent_id", agentInput.value.trim());
    setHash("events", next);
  });
  const status = el("span", { id: "stream-status", class: "badge badge-muted", text: "connecting" });
  const rows = el("tbody");
  const grid = el(
    "table",
    { id: "events", class: "grid" },
    el("thead", {}, el("tr", {}, ["Id", "Time", "Kind", "Paglet", "Detail"].map((t) => el("th", { text: t })))),
    rows,
  );
  main.replaceChildren(el("h2", {}, "Live events ", status), form, grid);
  const since = Math.max(0, Number((state.session && state.session.last_event_id) || 0) - 100);
  const query = new URLSearchParams({ since: String(since) });
  if (kind) query.set("kind", kind);
  if (agent) query.set("agent_id", agent);
  const source = new EventSource(new URL(`events/stream?${query}`, API), { withCredentials: true });
  // Rows stay ordered by event id, newest first, whichever way an event arrived.
  const add = (e) => {
    if (!e || typeof e.event_id !== "number") return;
    let before = rows.firstElementChild;
    while (before && Number(before.dataset.eventId) > e.event_id) before = before.nextElementSibling;
    if (before && Number(before.dataset.eventId) === e.event_id) return; // seen already
    const agentCell = e.agent_id ? el("a", { href: `#/paglet/${encodeURIComponent(e.agent_id)}`, text: e.agent_id }) : "";
    const row = el(
      "tr",
      { "data-event-id": e.event_id },
      el("td", { text: e.event_id }),
      el("td", { text: when(e.timestamp) }),
      el("td", { text: e.kind }),
      el("td", {}, agentCell),
      el("td", { text: e.error || (e.data && Object.keys(e.data).length ? JSON.stringify(e.data) : "") }),
    );
    rows.insertBefore(row, before);
    while (rows.childElementCount > 500) rows.lastElementChild.remove();
  };
  const fromStream = (message) => {
    try {
      add(JSON.parse(message.data));
    } catch {
      /* not an event */
    }
  };
  source.onopen = () => {
    status.textContent = "live";
    status.className = "badge badge-alive";
  };
  source.onerror = async () => {
    status.textContent = source.readyState === EventSource.CLOSED ? "closed" : "reconnecting";
    status.className = "badge badge-suspect";
    if (source.readyState === EventSource.CLOSED) {
      try {
        await api("ui/api/session"); // a 401 here sends the browser to the login page
      } catch {
        /* shown by the status badge */
      }
    }
  };
  // SSE names each event by its kind, and EventSource has no catch-all listener: the
  // known kinds are listened to, and a slow poll of GET /events adds any other kind.
  for (const k of new Set([...KNOWN_KINDS, ...kind.split(",").map((x) => x.trim()).filter(Boolean)])) {
    source.addEventListener(k, fromStream);
  }
  source.onmessage = fromStream;
  let polled = since;
  const stopPoll = every(5, async () => {
    const q = new URLSearchParams(query);
    q.set("since", String(polled));
    q.set("limit", "500");
    try {
      const page = await api(`events?${q}`);
      for (const e of page.events || []) add(e);
      polled = Math.max(polled, page.last_event_id || 0);
    } catch {
      /* the stream's badge tells */
    }
  });
  return () => {
    source.close();
    stopPoll();
  };
}

// -- the shell -----------------------------------------------------------------------------

const VIEWS = {
  mesh: meshView,
  paglets: pagletsView,
  paglet: pagletView,
  jobs: jobsView,
  groups: groupsView,
  artifacts: artifactsView,
  events: eventsView,
};

function route() {
  const main = document.getElementById("view");
  if (state.cleanup) state.cleanup();
  state.cleanup = null;
  const { path, params } = hashParams();
  const [name, ...rest] = path.split("/");
  const view = VIEWS[name] || meshView;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("current", link.dataset.view === (name === "paglet" ? "paglets" : name));
  }
  state.cleanup = view(main, params, decodeURIComponent(rest.join("/"))) || null;
}

async function start() {
  if (location.pathname.endsWith("/login")) {
    loginView(document.getElementById("view"));
    return;
  }
  try {
    state.session = await api("ui/api/session");
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      document.getElementById("view").replaceChildren(errorBox(e));
    }
    return;
  }
  state.csrf = state.session.csrf;
  document.getElementById("host-name").textContent = `${state.session.host_name} · ${state.session.code_version}`;
  document.getElementById("nav").hidden = false;
  const logout = document.getElementById("logout");
  logout.hidden = !state.session.auth_required;
  logout.addEventListener("click", async () => {
    try {
      await api("ui/logout", { method: "POST", body: {} });
    } finally {
      toLogin();
    }
  });
  window.addEventListener("hashchange", route);
  route();
}

start();
