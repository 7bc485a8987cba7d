// The API token the person typed, kept for this browser tab only (sessionStorage): it is gone
// when the tab closes, and never written into a URL, where logs and history would keep it.
const KEY = "headrace.dapr-api-token";

export function getToken() {
  return sessionStorage.getItem(KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(KEY, token);
  else sessionStorage.removeItem(KEY);
}
