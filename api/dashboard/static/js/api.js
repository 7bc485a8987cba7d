// Every call to the REST API goes through here: the same routes any client uses, the token
// header, errors as exceptions, and the token prompt on a 401, so nothing is shown without it.
import { askToken } from "./dialogs.js";
import { getToken } from "./token.js";

export const WORKFLOWS = "/v1.0/workflows/dapr";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let prompt = null; // one prompt for all the requests refused at once
let declinedFor = null; // the token (maybe "") whose prompt the person cancelled

function promptForToken(refused) {
  if (!prompt) {
    const reason = refused
      ? "The API refused this token. Enter the value of DAPR_API_TOKEN it runs with."
      : "This API needs its token (DAPR_API_TOKEN) before it shows anything.";
    prompt = askToken(reason).finally(() => { prompt = null; });
  }
  return prompt;
}

function urlFor(path, params) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== undefined && one !== null && one !== "") url.searchParams.append(key, one);
    }
  }
  return url;
}

/** Call the API; resolves to the parsed JSON body (null when empty), rejects with ApiError. */
export async function call(path, { method = "GET", body, params } = {}) {
  const url = urlFor(path, params);
  for (;;) {
    const sent = getToken();
    const headers = { accept: "application/json" };
    if (sent) headers["dapr-api-token"] = sent;
    if (body !== undefined) headers["content-type"] = "application/json";
    let response;
    try {
      response = await fetch(url, { method, headers, body, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, "ERR_NETWORK", `The API did not answer: ${err.message}`);
    }
    if (response.status === 401) {
      // A token typed while this request was under way: try it before asking.
      if (getToken() !== sent) continue;
      // The person cancelled the prompt for this very token: do not ask at every refresh.
      if (declinedFor !== sent && (await promptForToken(Boolean(sent))) !== null) {
        declinedFor = null;
        continue;
      }
      declinedFor = getToken();
      throw new ApiError(401, "ERR_UNAUTHORIZED", "The API needs its token to show anything.");
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      throw new ApiError(
        response.status,
        (data && data.errorCode) || `HTTP_${response.status}`,
        (data && data.message) || text || response.statusText,
      );
    }
    return data;
  }
}

export const instancePath = (id) => `${WORKFLOWS}/${encodeURIComponent(id)}`;
export const instanceUrl = (id) => `instance.html?id=${encodeURIComponent(id)}`;
