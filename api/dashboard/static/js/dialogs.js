// Modal dialogs: the token prompt and the confirmation every action asks for.
import { h } from "./dom.js";
import { getToken, setToken } from "./token.js";

function modal(dialog) {
  document.body.append(dialog);
  dialog.addEventListener("close", () => dialog.remove());
  dialog.showModal();
  return dialog;
}

/**
 * Ask for the API token. Resolves to the token (stored for this tab) or null when cancelled.
 * `reason` says why the page asks.
 */
export function askToken(reason) {
  return new Promise((resolve) => {
    let answer = null;
    const input = h("input", {
      type: "password", id: "token-input", name: "token", autocomplete: "off", required: true,
      "aria-label": "API token", placeholder: "dapr-api-token",
    });
    const form = h("form", { method: "dialog" },
      h("h2", { text: "API token" }),
      h("p", { text: reason }),
      input,
      h("div", { class: "buttons" },
        h("button", { type: "button", value: "forget", class: "ghost", id: "token-forget",
          onclick: () => { setToken(""); dialog.close(); } }, "Forget token"),
        h("button", { type: "button", id: "token-cancel", onclick: () => dialog.close() }, "Cancel"),
        h("button", { type: "submit", class: "primary", id: "token-submit" }, "Use token"),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      answer = input.value.trim();
      if (!answer) return;
      setToken(answer);
      dialog.close();
    });
    const dialog = modal(h("dialog", { id: "token-dialog", class: "token-dialog" }, form));
    dialog.addEventListener("close", () => resolve(answer || null));
    input.value = "";
    input.focus();
    if (getToken()) input.placeholder = "replace the current token";
  });
}

/** Ask before an action; resolves to true when the person confirms. */
export function confirmAction({ title, message, confirmLabel, danger = false }) {
  return new Promise((resolve) => {
    let confirmed = false;
    const dialog = h("dialog", { id: "confirm-dialog", class: "confirm-dialog" },
      h("form", { method: "dialog" },
        h("h2", { text: title }),
        h("p", { text: message }),
        h("div", { class: "buttons" },
          h("button", { type: "button", id: "confirm-cancel", onclick: () => dialog.close() }, "Cancel"),
          h("button", {
            type: "button", id: "confirm-ok", class: danger ? "danger" : "primary",
            onclick: () => { confirmed = true; dialog.close(); },
          }, confirmLabel),
        ),
      ),
    );
    dialog.addEventListener("close", () => resolve(confirmed));
    modal(dialog);
  });
}
