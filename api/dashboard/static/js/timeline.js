// The history as bars on a time axis: activities, timers and child workflows from their start to
// their end, external events as points, pauses as bands. A slow step is a long bar.
import { instanceUrl } from "./api.js";
import { fill, h, s } from "./dom.js";
import { formatDuration, parseTime } from "./format.js";

const MAX_ROWS = 300;
const ROW = 24;
const AXIS = 28;
const LABEL = 280;
const TAIL = 86; // room right of the bars for the duration text
const STEPS = [
  1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3,
  600e3, 900e3, 1800e3, 3600e3, 7200e3, 21600e3, 43200e3, 86400e3, 172800e3, 604800e3,
];
const TIMER_LABELS = { timer: "timer", retry: "retry back-off", external_event: "event timeout" };

/** "name(input)" when the input is short enough to tell calls apart, else the name alone. */
function withInput(name, input) {
  if (input === undefined || input === null) return name;
  let text = input;
  try {
    const value = JSON.parse(input);
    // An object's first string field usually names the call best ({"step": "quote-1", ...}).
    const first = value && typeof value === "object" && !Array.isArray(value)
      ? Object.values(value).find((v) => typeof v === "string") : undefined;
    text = first !== undefined ? first : JSON.stringify(value);
  } catch {
    // not JSON: show it as it is
  }
  return text.length <= 20 ? `${name}(${text})` : name;
}

/** Spans and points from history events (the JSON the history route returns). */
export function buildSpans(events) {
  const spans = [];
  const open = { task: new Map(), timer: new Map(), child: new Map() };
  let start = NaN;
  let end = NaN;
  let paused = null;
  const begin = (map, key, span) => {
    map.set(key, span);
    spans.push(span);
  };
  const finish = (map, key, at, state, detail) => {
    const span = map.get(key);
    if (!span) return;
    Object.assign(span, { end: at, state, detail: detail || span.detail });
    map.delete(key);
  };
  for (const e of events) {
    const at = parseTime(e.timestamp);
    if (Number.isNaN(start)) start = at;
    switch (e.type) {
      case "ExecutionStarted":
        start = Math.min(start, at);
        break;
      case "TaskScheduled":
        begin(open.task, e.event_id, {
          kind: "activity", label: withInput(e.name, e.input), start: at, end: null, state: "running", detail: e.input,
        });
        break;
      case "TaskCompleted":
        finish(open.task, e.task_scheduled_id, at, "completed");
        break;
      case "TaskFailed":
        finish(open.task, e.task_scheduled_id, at, "failed", e.failure && e.failure.message);
        break;
      case "TimerCreated":
        begin(open.timer, e.event_id, {
          kind: "timer", label: TIMER_LABELS[e.origin] || `timer (${e.origin})`, start: at, end: null,
          state: "running", planned: parseTime(e.fire_at),
        });
        break;
      case "TimerFired":
        finish(open.timer, e.timer_id, at, "completed");
        break;
      case "ChildWorkflowCreated":
        begin(open.child, e.event_id, {
          kind: "child", label: `child: ${e.name}`, start: at, end: null, state: "running", child: e.instance_id,
        });
        break;
      case "ChildWorkflowCompleted":
        finish(open.child, e.task_scheduled_id, at, "completed");
        break;
      case "ChildWorkflowFailed":
        finish(open.child, e.task_scheduled_id, at, "failed", e.failure && e.failure.message);
        break;
      case "EventSent":
        spans.push({ kind: "event", label: `sent: ${e.name} → ${e.instance_id}`, start: at, end: at, state: "completed", detail: e.input });
        break;
      case "EventRaised":
        spans.push({ kind: "event", label: `event: ${e.name}`, start: at, end: at, state: "completed", detail: e.input });
        break;
      case "ExecutionSuspended":
        paused = { kind: "paused", label: "paused", start: at, end: null, state: "running", detail: e.reason };
        spans.push(paused);
        break;
      case "ExecutionResumed":
        if (paused) Object.assign(paused, { end: at, state: "completed" });
        paused = null;
        break;
      case "ExecutionCompleted":
      case "ExecutionTerminated":
        end = at;
        break;
      default:
        break;
    }
  }
  return { start, end, spans };
}

function niceStep(range) {
  return STEPS.find((step) => range / step <= 8) || STEPS[STEPS.length - 1];
}

function tickLabel(ms) {
  if (ms === 0) return "0";
  if (ms < 1000) return `+${ms} ms`;
  if (ms < 60e3) return `+${ms / 1000} s`;
  if (ms < 3600e3) return `+${ms / 60e3} m`;
  if (ms < 86400e3) return `+${ms / 3600e3} h`;
  return `+${ms / 86400e3} d`;
}

function shorten(text, max = 38) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

const ENDED = { COMPLETED: "completed", FAILED: "failed", TERMINATED: "terminated", CANCELED: "terminated" };

/** Draw the timeline of `events` into `container`; `status` is the instance's runtime status. */
export function renderTimeline(container, events, { status, now = Date.now() }) {
  const finished = status in ENDED;
  const { start, end, spans } = buildSpans(events);
  if (Number.isNaN(start)) {
    fill(container, h("p", { class: "hint", text: "No history yet." }));
    return;
  }
  const last = finished
    ? (Number.isNaN(end) ? Math.max(start, ...spans.map((sp) => sp.end ?? sp.start)) : end)
    : Math.max(now, ...spans.map((sp) => sp.end ?? sp.start));
  const stop = Math.max(last, start + 1);
  const rows = [
    { kind: "workflow", label: "workflow", start, end: finished ? stop : null, state: ENDED[status] || "running" },
    ...spans.slice().sort((a, b) => a.start - b.start),
  ].slice(0, MAX_ROWS + 1);

  // A slow step should stand out: mark the longest finished step (when there is a choice).
  const measured = rows.filter((r) => ["activity", "child", "timer"].includes(r.kind) && r.end !== null);
  if (measured.length > 1) {
    const slowest = measured.reduce((a, b) => ((b.end - b.start) > (a.end - a.start) ? b : a));
    if (slowest.end - slowest.start > 0) slowest.slowest = true;
  }

  const width = Math.max(640, container.clientWidth || 960);
  const plot = width - LABEL - TAIL;
  const range = stop - start;
  const x = (t) => LABEL + ((Math.min(Math.max(t, start), stop) - start) / range) * plot;
  const height = AXIS + rows.length * ROW + 8;
  const svg = s("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, class: "timeline-svg", role: "img",
    "aria-label": `Timeline of ${rows.length - 1} steps over ${formatDuration(range)}`,
  });

  const step = niceStep(range);
  for (let t = 0; t <= range + 1e-9; t += step) {
    const px = LABEL + (t / range) * plot;
    svg.append(
      s("line", { x1: px, x2: px, y1: AXIS - 6, y2: height, class: "grid" }),
      s("text", { x: px, y: AXIS - 10, class: "tick", "text-anchor": "middle", text: tickLabel(t) }),
    );
  }

  rows.forEach((row, i) => {
    const y = AXIS + i * ROW;
    const rowEnd = row.end ?? stop;
    const duration = rowEnd - row.start;
    const group = s("g", {
      class: ["span", `span-${row.kind}`, `state-${row.state}`, row.slowest && "slowest"],
      dataset: { kind: row.kind, name: row.label, state: row.state },
    });
    const tip = `${row.label}\n${row.state}, ${formatDuration(duration)}` +
      (row.planned ? `\nfires at ${new Date(row.planned).toISOString()}` : "") +
      (row.detail ? `\n${shorten(String(row.detail), 200)}` : "");
    group.append(s("title", { text: tip }));
    const label = s("text", { x: LABEL - 8, y: y + ROW / 2 + 4, class: "label", "text-anchor": "end", text: shorten(row.label) });
    if (row.child) {
      const link = s("a", { href: instanceUrl(row.child), class: "child-link" });
      link.append(label);
      group.append(link);
    } else {
      group.append(label);
    }
    if (row.kind === "event") {
      const cx = x(row.start);
      const cy = y + ROW / 2;
      group.append(s("path", { d: `M${cx} ${cy - 7} L${cx + 7} ${cy} L${cx} ${cy + 7} L${cx - 7} ${cy} Z`, class: "bar" }));
    } else {
      const x0 = x(row.start);
      const w = Math.max(2, x(rowEnd) - x0);
      group.append(s("rect", { x: x0, y: y + 4, width: w, height: ROW - 8, rx: 3, class: "bar" }));
    }
    const note = row.kind === "event"
      ? shorten(row.detail === undefined || row.detail === null ? "no payload" : String(row.detail), 60)
      : `${formatDuration(duration)}${row.state === "running" ? " …" : ""}${row.slowest ? " · slowest" : ""}`;
    const after = x(rowEnd) + (row.kind === "event" ? 10 : 6);
    // Near the right edge, the note goes left of the bar's end so that it stays readable.
    const room = width - after;
    const left = row.kind === "event" && room < note.length * 6.5;
    group.append(s("text", {
      x: left ? x(row.start) - 10 : Math.min(after, width - TAIL + 6), y: y + ROW / 2 + 4,
      class: row.kind === "event" ? "duration payload-note" : "duration",
      "text-anchor": left ? "end" : "start", text: note,
    }));
    svg.append(group);
  });

  const hidden = spans.length - (rows.length - 1);
  fill(container, svg, hidden > 0 ? h("p", { class: "hint", text: `${hidden} more steps are not drawn; the raw history has them all.` }) : null);
}

/** The parent and the children an instance's history names. */
export function relatives(events) {
  const started = events.find((e) => e.type === "ExecutionStarted");
  const parent = started && started.parent ? started.parent.instance_id : null;
  const children = events.filter((e) => e.type === "ChildWorkflowCreated").map((e) => e.instance_id);
  return { parent, children: [...new Set(children)] };
}
