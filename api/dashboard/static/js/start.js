// The "Start workflow" dialog: a registered name (or any name, when the API does not know the
// registry), an optional instance ID and a JSON input, checked before anything is sent.
import { WORKFLOWS, call, instanceUrl } from "./api.js";
import { byId, fill } from "./dom.js";
import { jsonProblem } from "./format.js";

const ID_CHARS = /^[\p{L}\p{Nd}_-]+$/u;

/** The problem with an instance ID the API would refuse, or "" (empty is fine: a UUID). */
export function idProblem(id) {
  if (id === "") return "";
  if (new TextEncoder().encode(id).length > 64) return "The instance ID is longer than 64 bytes.";
  if (!ID_CHARS.test(id)) return "An instance ID has only letters, digits, _ and -.";
  return "";
}

export function setUpStartDialog(names) {
  const dialog = byId("start-dialog");
  const name = byId("start-name");
  const id = byId("start-id");
  const input = byId("start-input");
  const error = byId("start-error");
  const submit = byId("start-submit");

  const problem = () => (name.value.trim() === "" ? "Give the workflow's name." : "")
    || idProblem(id.value.trim()) || jsonProblem(input.value);

  const check = () => {
    const found = problem();
    error.textContent = name.value || id.value || input.value ? found : "";
    submit.disabled = Boolean(found);
    const known = names();
    const hint = byId("start-name-hint");
    if (known.registryKnown && name.value && !known.registered.includes(name.value.trim())) {
      hint.textContent = "This name is not registered with the app the API was started with.";
    } else if (!known.registryKnown) {
      hint.textContent = "The API was started without --app: any name is sent as typed.";
    } else {
      hint.textContent = "";
    }
  };
  for (const el of [name, id, input]) el.addEventListener("input", check);

  byId("start-button").addEventListener("click", () => {
    error.textContent = "";
    check();
    dialog.showModal();
    name.focus();
  });
  byId("start-cancel").addEventListener("click", () => dialog.close());

  byId("start-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const found = problem();
    if (found) {
      error.textContent = found;
      return;
    }
    submit.disabled = true;
    try {
      const body = input.value.trim() === "" ? undefined : input.value;
      const answer = await call(`${WORKFLOWS}/${encodeURIComponent(name.value.trim())}/start`, {
        method: "POST", body, params: { instanceID: id.value.trim() },
      });
      window.location.href = instanceUrl(answer.instanceID);
    } catch (err) {
      fill(error, `${err.code ? `${err.code}: ` : ""}${err.message}`);
      submit.disabled = false;
    }
  });
}
