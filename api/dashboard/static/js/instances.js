// The instances page: live counts by status, a filtered and paged table, search by ID, and the
// start dialog. Filters live in the URL, so a reload or a shared link shows the same list.
import { ApiError, WORKFLOWS, call, instancePath, instanceUrl } from "./api.js";
import { askToken } from "./dialogs.js";
import { byId, fill, h } from "./dom.js";
import {
  STATUSES, formatDuration, formatTime, instanceDuration, isTerminal, parseTime, statusClass,
} from "./format.js";
import { Poller } from "./poll.js";
import { setUpStartDialog } from "./start.js";

const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 24 * 3600e3, "7d": 7 * 24 * 3600e3 };

const view = {
  statuses: new Set(),
  name: "",
  range: "",
  from: "",
  to: "",
  order: "desc",
  size: "50",
  search: "",
  tokens: [null], // the continuation token of each page so far; the last one is shown
  next: null,
  shown: "", // what the table shows, to tell whether a refresh changed anything
};
let names = { registryKnown: false, registered: [], seen: [] };

function readUrl() {
  const q = new URLSearchParams(window.location.search);
  view.statuses = new Set((q.get("status") || "").split(",").filter((s) => STATUSES.includes(s)));
  view.name = q.get("name") || "";
  view.range = q.get("range") || "";
  view.from = q.get("from") || "";
  view.to = q.get("to") || "";
  view.order = q.get("order") === "asc" ? "asc" : "desc";
  view.size = ["10", "25", "50", "100"].includes(q.get("size")) ? q.get("size") : "50";
  view.search = q.get("id") || "";
}

function writeUrl() {
  const q = new URLSearchParams();
  if (view.statuses.size) q.set("status", [...view.statuses].join(","));
  for (const [key, value] of [["name", view.name], ["range", view.range], ["id", view.search]]) {
    if (value) q.set(key, value);
  }
  if (view.range === "custom") {
    if (view.from) q.set("from", view.from);
    if (view.to) q.set("to", view.to);
  }
  if (view.order !== "desc") q.set("order", view.order);
  if (view.size !== "50") q.set("size", view.size);
  const query = q.toString();
  window.history.replaceState(null, "", query ? `?${query}` : window.location.pathname);
}

function showFilters() {
  byId("f-name").value = view.name;
  byId("f-range").value = view.range;
  byId("f-from").value = view.from;
  byId("f-to").value = view.to;
  byId("f-order").value = view.order;
  byId("f-size").value = view.size;
  byId("search-id").value = view.search;
  document.body.classList.toggle("show-custom-range", view.range === "custom");
}

/** createdAfter/createdBefore for the chosen range, computed at each refresh (ranges slide). */
function timeParams() {
  if (view.range in RANGES) {
    return { createdAfter: new Date(Date.now() - RANGES[view.range]).toISOString() };
  }
  if (view.range === "custom") {
    const local = (text) => (text ? new Date(text).toISOString() : undefined);
    return { createdAfter: local(view.from), createdBefore: local(view.to) };
  }
  return {};
}

function renderCounts(counts) {
  const chip = (label, status, count) => h("button", {
    type: "button",
    class: ["count", status ? statusClass(status) : "count-all", count === 0 && "zero"],
    "aria-pressed": status ? String(view.statuses.has(status)) : String(view.statuses.size === 0),
    dataset: { status: status || "ALL" },
    title: status ? `Show only ${label} (click again to drop)` : "Show every status",
    onclick: () => {
      if (!status) view.statuses.clear();
      else if (!view.statuses.delete(status)) view.statuses.add(status);
      filtersChanged();
    },
  }, h("span", { class: "count-label", text: label }), h("span", { class: "count-value", text: count }));
  fill(byId("counts"),
    chip("All", null, counts.total),
    STATUSES.map((s) => chip(s.replace(/_/g, " ").toLowerCase(), s, counts.counts[s] ?? 0)));
}

function durationCell(row) {
  const cell = h("td", { class: "num duration", text: formatDuration(instanceDuration(row)) });
  if (!isTerminal(row.runtimeStatus)) cell.dataset.created = row.createdAt;
  return cell;
}

function renderRows(rows) {
  const body = byId("instances").querySelector("tbody");
  fill(body, rows.map((row) => h("tr", { dataset: { id: row.instanceID } },
    h("td", { class: "id" }, h("a", { href: instanceUrl(row.instanceID), text: row.instanceID })),
    h("td", { text: row.workflowName }),
    h("td", {}, h("span", { class: statusClass(row.runtimeStatus), text: row.runtimeStatus })),
    h("td", { text: formatTime(row.createdAt), title: row.createdAt }),
    h("td", { text: formatTime(row.lastUpdatedAt), title: row.lastUpdatedAt }),
    durationCell(row),
  )));
}

function renderPager(searching) {
  byId("prev").disabled = searching || view.tokens.length <= 1;
  byId("next").disabled = searching || !view.next;
  byId("page-label").textContent = searching ? "" : `Page ${view.tokens.length}`;
}

function say(text, kind = "") {
  const message = byId("message");
  message.textContent = text;
  message.className = `message ${kind}`;
}

async function fetchRows() {
  if (view.search) {
    try {
      const found = await call(instancePath(view.search));
      say(`Showing the instance with ID ${view.search}. Clear the search to see the list.`);
      return { rows: [found], next: null };
    } catch (err) {
      if (err.status !== 404) throw err;
      say(`No instance has the ID ${view.search}.`, "warn");
      return { rows: [], next: null };
    }
  }
  const page = await call(WORKFLOWS, {
    params: {
      runtimeStatus: [...view.statuses],
      workflowName: view.name,
      pageSize: view.size,
      order: view.order,
      continuationToken: view.tokens[view.tokens.length - 1],
      ...timeParams(),
    },
  });
  const rows = page.instances;
  say(rows.length ? "" : "No instance matches these filters.");
  return { rows, next: page.continuationToken || null };
}

async function refresh() {
  try {
    const [counts, { rows, next }] = await Promise.all([
      call("/v1.0/headrace/counts", { params: { workflowName: view.name, ...timeParams() } }),
      fetchRows(),
    ]);
    renderCounts(counts);
    view.next = next;
    renderRows(rows);
    renderPager(Boolean(view.search));
    const shown = JSON.stringify([rows, next]);
    const changed = shown !== view.shown;
    view.shown = shown;
    return changed;
  } catch (err) {
    view.shown = "";
    fill(byId("instances").querySelector("tbody"));
    fill(byId("counts"));
    renderPager(true);
    if (err instanceof ApiError && err.status === 401) {
      say("The API needs its token to show anything. Use the “API token” button.", "warn");
    } else if (err instanceof ApiError && err.status === 400) {
      say(err.message, "error");
    } else {
      say(`Could not load instances: ${err.message}`, "error");
    }
    return false;
  }
}

async function loadNames() {
  try {
    names = await call("/v1.0/headrace/workflow-names");
  } catch {
    return;
  }
  const all = [...new Set([...names.registered, ...names.seen])].sort();
  fill(byId("workflow-names"), all.map((name) => h("option", { value: name })));
}

const poller = new Poller(refresh, {
  min: 2000,
  max: 15000,
  onSchedule: (wait) => { byId("live").textContent = `live · next in ${Math.round(wait / 1000)} s`; },
});

function filtersChanged() {
  view.tokens = [null];
  view.next = null;
  writeUrl();
  showFilters();
  poller.kick();
}

function wire() {
  const filters = byId("filters");
  let typing = null;
  byId("f-name").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { view.name = byId("f-name").value.trim(); filtersChanged(); }, 300);
  });
  filters.addEventListener("change", (event) => {
    if (event.target.id === "f-name") return; // handled as it is typed
    view.range = byId("f-range").value;
    view.from = byId("f-from").value;
    view.to = byId("f-to").value;
    view.order = byId("f-order").value;
    view.size = byId("f-size").value;
    filtersChanged();
  });
  filters.addEventListener("submit", (event) => event.preventDefault());
  byId("f-clear").addEventListener("click", () => {
    Object.assign(view, { statuses: new Set(), name: "", range: "", from: "", to: "", search: "" });
    filtersChanged();
  });
  byId("search").addEventListener("submit", (event) => {
    event.preventDefault();
    view.search = byId("search-id").value.trim();
    filtersChanged();
  });
  byId("search-id").addEventListener("search", () => {
    if (byId("search-id").value === "" && view.search) {
      view.search = "";
      filtersChanged();
    }
  });
  byId("next").addEventListener("click", () => {
    if (!view.next) return;
    view.tokens.push(view.next);
    poller.kick();
  });
  byId("prev").addEventListener("click", () => {
    if (view.tokens.length > 1) view.tokens.pop();
    poller.kick();
  });
  byId("token-button").addEventListener("click", async () => {
    await askToken("Enter the value of DAPR_API_TOKEN the API runs with.");
    loadNames();
    poller.kick();
  });
  // Running instances' durations grow between refreshes.
  setInterval(() => {
    for (const cell of document.querySelectorAll("td.duration[data-created]")) {
      cell.textContent = formatDuration(Date.now() - parseTime(cell.dataset.created));
    }
  }, 1000);
}

readUrl();
showFilters();
wire();
setUpStartDialog(() => names);
poller.start();
loadNames();
