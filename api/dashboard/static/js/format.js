// How times, durations, statuses and payloads read on the page.
export const STATUSES = [
  "RUNNING", "PENDING", "SUSPENDED", "COMPLETED", "FAILED", "TERMINATED", "CANCELED", "CONTINUED_AS_NEW",
];
const TERMINAL = new Set(["COMPLETED", "FAILED", "TERMINATED", "CANCELED"]);

export function isTerminal(status) {
  return TERMINAL.has(status);
}

/** Milliseconds since the epoch, or NaN. The API writes RFC 3339 with up to 6 fraction digits. */
export function parseTime(text) {
  if (!text) return NaN;
  // Date.parse wants at most 3 fraction digits everywhere; keep milliseconds.
  return Date.parse(String(text).replace(/(\.\d{3})\d+/, "$1"));
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** Local time as 2026-11-29 14:32:05 (the tooltip has the UTC original). */
export function formatTime(text) {
  const ms = parseTime(text);
  if (Number.isNaN(ms) || ms <= 0) return "–";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(2) : s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${Math.floor(s % 60)} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} m`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** How long an instance ran: to its last update when finished, else to now. */
export function instanceDuration(instance, now = Date.now()) {
  const start = parseTime(instance.createdAt);
  const end = isTerminal(instance.runtimeStatus) ? parseTime(instance.lastUpdatedAt) : now;
  return end - start;
}

/** JSON text indented for reading; text that is not JSON comes back as it is. */
export function prettyJson(text) {
  if (text === undefined || text === null) return "";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return String(text);
  }
}

/** "" is no payload; anything else must parse as JSON. Returns an error message or "". */
export function jsonProblem(text) {
  if (text.trim() === "") return "";
  try {
    JSON.parse(text);
    return "";
  } catch (err) {
    return `Not valid JSON: ${err.message}`;
  }
}

export function statusClass(status) {
  return `status status-${String(status || "unknown").toLowerCase().replace(/_/g, "-")}`;
}

/** The API's RFC 3339 form of a Date (UTC, milliseconds). */
export function rfc3339(date) {
  return date.toISOString();
}
