// The instance page: status, payloads, failure, the timeline, parent and child links, raw
// history on demand, and the actions; it follows the instance by polling with back-off.
import { ApiError, call, instancePath, instanceUrl } from "./api.js";
import { setUpActions } from "./actions.js";
import { askToken } from "./dialogs.js";
import { byId, fill, h } from "./dom.js";
import { formatDuration, formatTime, instanceDuration, isTerminal, prettyJson, statusClass } from "./format.js";
import { Poller } from "./poll.js";
import { relatives, renderTimeline } from "./timeline.js";

const id = new URLSearchParams(window.location.search).get("id") || "";
// `shown`: the instance was on the page once, so a 404 now means it was purged.
const page = { instance: null, history: null, seen: "", shown: false };

function say(text, kind = "") {
  const message = byId("message");
  message.textContent = text;
  message.className = `message ${kind}`;
}

function fact(term, ...value) {
  return h("div", { class: "fact" }, h("dt", { text: term }), h("dd", {}, ...value));
}

function link(target) {
  return h("a", { href: instanceUrl(target), class: "mono", text: target });
}

function renderFacts(instance) {
  const { parent, children } = page.history ? relatives(page.history.events) : { parent: null, children: [] };
  fill(byId("facts"),
    fact("Workflow", instance.workflowName),
    fact("Created", h("span", { title: instance.createdAt, text: formatTime(instance.createdAt) })),
    fact("Last updated", h("span", { title: instance.lastUpdatedAt, text: formatTime(instance.lastUpdatedAt) })),
    fact("Duration", h("span", { id: "duration", text: formatDuration(instanceDuration(instance)) })),
    parent ? fact("Parent", h("span", { id: "parent-link" }, link(parent))) : null,
    children.length ? fact("Children", h("span", { id: "child-links", class: "links" }, children.map(link))) : null,
  );
}

function payload(el, text, none) {
  el.textContent = text === undefined ? none : prettyJson(text);
  el.classList.toggle("empty", text === undefined);
}

function renderInstance(instance) {
  const props = instance.properties || {};
  fill(byId("instance-id"), instance.instanceID);
  const status = byId("status");
  status.textContent = instance.runtimeStatus;
  status.className = statusClass(instance.runtimeStatus);
  document.title = `Headrace · ${instance.instanceID}`;
  renderFacts(instance);
  payload(byId("input"), props["dapr.workflow.input"], "no input");
  payload(byId("output"), props["dapr.workflow.output"], isTerminal(instance.runtimeStatus) ? "no output" : "not finished");
  payload(byId("custom-status"), props["dapr.workflow.custom_status"], "none");
  const failed = props["dapr.workflow.failure.error_type"] !== undefined;
  byId("failure").hidden = !failed;
  if (failed) {
    byId("failure-type").textContent = props["dapr.workflow.failure.error_type"];
    byId("failure-message").textContent = props["dapr.workflow.failure.error_message"] || "";
    const stack = props["dapr.workflow.failure.stack_trace"];
    byId("failure-trace").hidden = !stack;
    byId("failure-stack").textContent = stack || "";
  }
}

function renderHistory() {
  const events = page.history ? page.history.events : [];
  renderTimeline(byId("timeline"), events, { status: page.instance.runtimeStatus });
  if (byId("raw").open) byId("raw-json").textContent = JSON.stringify(page.history, null, 2);
}

async function loadHistory() {
  try {
    page.history = await call(`${instancePath(id)}/history`);
  } catch (err) {
    fill(byId("timeline"), h("p", { class: "error", text: `Could not read the history: ${err.message}` }));
    return;
  }
  renderFacts(page.instance);
  renderHistory();
}

function gone() {
  byId("instance-body").hidden = true;
  fill(byId("instance-id"), id);
  byId("status").textContent = "";
  byId("status").className = "status";
  say(page.shown ? `The instance ${id} is gone: it was purged.` : `No instance has the ID ${id}.`, "warn");
  page.instance = null;
  page.history = null;
}

let updateActions = () => {};

async function refresh() {
  let instance;
  try {
    instance = await call(instancePath(id));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      const was = page.seen;
      gone();
      updateActions(null);
      page.seen = "gone";
      return was !== "gone";
    }
    if (err instanceof ApiError && err.status === 401) {
      byId("instance-body").hidden = true;
      say("The API needs its token to show anything. Use the “API token” button.", "warn");
      return false;
    }
    say(`Could not load the instance: ${err.message}`, "error");
    return false;
  }
  page.instance = instance;
  page.shown = true;
  byId("instance-body").hidden = false;
  renderInstance(instance);
  updateActions(instance);
  if (byId("message").classList.contains("warn")) say("");
  const seen = `${instance.runtimeStatus} ${instance.lastUpdatedAt}`;
  const changed = seen !== page.seen;
  page.seen = seen;
  if (changed || !page.history) await loadHistory();
  else if (!isTerminal(instance.runtimeStatus)) renderHistory(); // running bars grow with time
  return changed;
}

const poller = new Poller(refresh, {
  min: 1000,
  max: 10000,
  onSchedule: (wait) => { byId("live").textContent = `live · next in ${Math.round(wait / 1000)} s`; },
});

function main() {
  fill(byId("crumb-id"), id);
  if (!id) {
    say("No instance ID in the address (instance.html?id=...).", "error");
    return;
  }
  updateActions = setUpActions({ id, say, sent: () => poller.kick() });
  updateActions(null);
  byId("raw").addEventListener("toggle", () => {
    if (byId("raw").open) byId("raw-json").textContent = JSON.stringify(page.history, null, 2);
  });
  byId("token-button").addEventListener("click", async () => {
    await askToken("Enter the value of DAPR_API_TOKEN the API runs with.");
    poller.kick();
  });
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => { if (page.instance && page.history) renderHistory(); }, 150);
  });
  setInterval(() => {
    if (page.instance && !isTerminal(page.instance.runtimeStatus)) {
      const el = document.getElementById("duration");
      if (el) el.textContent = formatDuration(instanceDuration(page.instance));
    }
  }, 1000);
  poller.start();
}

main();
