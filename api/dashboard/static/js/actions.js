// The instance page's actions, through the same REST routes users call: raise an event, pause,
// resume, terminate and purge. Each asks for a confirmation first.
import { call, instancePath } from "./api.js";
import { confirmAction } from "./dialogs.js";
import { byId } from "./dom.js";
import { isTerminal, jsonProblem } from "./format.js";

const COMMANDS = {
  pause: { button: "act-pause", label: "Pause", allowed: (s) => s === "RUNNING" || s === "PENDING",
    message: "Pause this instance? It stops where it is; events raised meanwhile wait for the resume." },
  resume: { button: "act-resume", label: "Resume", allowed: (s) => s === "SUSPENDED",
    message: "Resume this instance? Events raised while it was paused are delivered." },
  terminate: { button: "act-terminate", label: "Terminate", danger: true, allowed: (s) => !isTerminal(s),
    message: "Terminate this instance and its child workflows? This cannot be undone." },
  purge: { button: "act-purge", label: "Purge", danger: true, allowed: (s) => isTerminal(s),
    message: "Purge this instance, its history and its child workflows? Nothing of them is kept." },
};

/**
 * Wire the buttons. `say(text, kind)` reports, and `sent()` is called after the API accepted a
 * command (the page then polls quickly). Returns `update(instance)`, which enables what the
 * instance's status allows.
 */
export function setUpActions({ id, say, sent }) {
  for (const [command, spec] of Object.entries(COMMANDS)) {
    byId(spec.button).addEventListener("click", async () => {
      const ok = await confirmAction({
        title: `${spec.label} ${id}?`, message: spec.message, confirmLabel: spec.label, danger: spec.danger,
      });
      if (!ok) return;
      try {
        await call(`${instancePath(id)}/${command}`, { method: "POST" });
        say(`${spec.label}: accepted. The page follows the instance as the engine applies it.`, "ok");
        sent();
      } catch (err) {
        say(`${spec.label} refused: ${err.code}: ${err.message}`, "error");
      }
    });
  }

  const form = byId("event-form");
  const name = byId("event-name");
  const payload = byId("event-payload");
  const error = byId("event-error");
  const send = byId("event-send");
  const check = () => {
    const problem = (name.value.trim() === "" ? "Give the event's name." : "") || jsonProblem(payload.value);
    error.textContent = name.value || payload.value ? problem : "";
    send.disabled = Boolean(problem);
    return problem;
  };
  name.addEventListener("input", check);
  payload.addEventListener("input", check);
  byId("act-raise").addEventListener("click", () => {
    form.hidden = !form.hidden;
    check();
    if (!form.hidden) name.focus();
  });
  byId("event-cancel").addEventListener("click", () => { form.hidden = true; });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (check()) return;
    const eventName = name.value.trim();
    const body = payload.value.trim() === "" ? undefined : payload.value;
    const ok = await confirmAction({
      title: `Raise “${eventName}”?`,
      message: `Send the event “${eventName}” to ${id} with ${body === undefined ? "no payload" : `the payload ${body}`}.`,
      confirmLabel: "Raise event",
    });
    if (!ok) return;
    try {
      await call(`${instancePath(id)}/raiseEvent/${encodeURIComponent(eventName)}`, { method: "POST", body });
      say(`Event “${eventName}” raised.`, "ok");
      form.reset();
      form.hidden = true;
      sent();
    } catch (err) {
      error.textContent = `${err.code}: ${err.message}`;
    }
  });

  return function update(instance) {
    const status = instance ? instance.runtimeStatus : null;
    for (const spec of Object.values(COMMANDS)) byId(spec.button).disabled = !status || !spec.allowed(status);
    byId("act-raise").disabled = !status || isTerminal(status);
    if (byId("act-raise").disabled) form.hidden = true;
  };
}
