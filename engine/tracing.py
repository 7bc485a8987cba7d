"""OpenTelemetry traces across every hop: API request, command, turns, activities, child workflows.

Off unless configured. `configure_from_env` turns tracing on only when the standard variables ask for
it (`OTEL_TRACES_EXPORTER` other than `none`, or `OTEL_EXPORTER_OTLP_ENDPOINT` /
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/),
and `install` is the test hook that installs an exporter directly. Until then nothing here imports
OpenTelemetry and every hook is behind one `is None` check, so the hot path pays nothing.

The W3C trace context (https://www.w3.org/TR/trace-context/) travels in Kafka record headers
(`traceparent`, `tracestate`), where OpenTelemetry's messaging conventions put it
(https://opentelemetry.io/docs/specs/semconv/messaging/messaging-spans/#context-propagation):

- the REST API's request span (or the caller's span, in the Python client) is the parent of the
  `StartWorkflow` command; any producer may set the header;
- the engine makes one *workflow* span per run, child of the command's context, and one *turn* span
  per input that changed the instance, child of the workflow span; the turn's context goes on the
  work items and child starts it writes;
- a worker makes one *activity* span per attempt (a retried activity has one per attempt), child
  of the turn that scheduled it, with an error status on failure; its context goes on the result;
- a child workflow's span is a child of the parent's turn that started it.

A run outlives processes, so its span cannot be a live object: the workflow span's IDs are chosen
when the run starts, kept in the headers of the instance's `status` record (restored with the
partition), and the span is written when the run ends, with its start time. Spans of the engine are
written only after the transaction that holds their turn commits: a turn rebuilt after an abort, or
replayed from history after a restart, writes none (the replay executor knows nothing of tracing).
The core (`engine.core`) never imports OpenTelemetry.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .core.commands import StartWorkflow
from .core.values import RuntimeStatus

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

    from .core.commands import ActivityWorkItem, InstanceMessage
    from .core.state import InstanceState
    from .core.values import FailureDetails

__all__ = [
    "PARENT_SPAN_HEADER",
    "TRACEPARENT",
    "TRACESTATE",
    "ActivitySpan",
    "Headers",
    "PartitionTracer",
    "TraceContext",
    "configure_from_env",
    "current_context",
    "enabled",
    "headers_for_current",
    "install",
    "otel_context",
    "shutdown",
    "tracer",
]

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: On a `status` record: the span ID of the workflow span's parent (the command that started it).
PARENT_SPAN_HEADER = "headrace-parent-span"
#: The instrumentation scope of every span here.
SCOPE = "headrace"

#: Kafka record headers as aiokafka takes and gives them.
Headers = Sequence[tuple[str, bytes]]

_INVALID_TRACE = "0" * 32
_INVALID_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    """One span's W3C trace context: what a header carries, and all a later hop needs to link to it."""

    trace_id: int
    span_id: int
    sampled: bool = True
    #: The `tracestate` header, passed on unchanged.
    state: str = ""

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"

    def headers(self) -> list[tuple[str, bytes]]:
        out = [(TRACEPARENT, self.traceparent.encode("ascii"))]
        if self.state:
            out.append((TRACESTATE, self.state.encode("ascii")))
        return out

    def child(self, span_id: int | None = None) -> TraceContext:
        """A new span in the same trace (a random span ID unless given)."""
        return TraceContext(self.trace_id, span_id or _new_span_id(), self.sampled, self.state)

    @classmethod
    def parse(cls, traceparent: str | bytes | None, tracestate: str | bytes | None = None) -> TraceContext | None:
        """The context a `traceparent` header names; None when it is absent or malformed (then the
        receiver starts a new trace, as the W3C recommendation says)."""
        if traceparent is None:
            return None
        try:
            text = traceparent.decode("ascii") if isinstance(traceparent, bytes) else traceparent
            state = tracestate.decode("ascii") if isinstance(tracestate, bytes) else (tracestate or "")
        except UnicodeDecodeError:
            return None
        parts = text.strip().split("-")
        if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff" or (parts[0] == "00" and len(parts) != 4):
            return None
        version, trace_hex, span_hex, flags_hex = parts[:4]
        if len(trace_hex) != 32 or len(span_hex) != 16 or len(flags_hex) != 2:
            return None
        if trace_hex == _INVALID_TRACE or span_hex == _INVALID_SPAN:
            return None
        try:
            int(version, 16)
            trace_id, span_id, flags = int(trace_hex, 16), int(span_hex, 16), int(flags_hex, 16)
        except ValueError:
            return None
        if trace_hex != trace_hex.lower() or span_hex != span_hex.lower():
            return None
        return cls(trace_id, span_id, bool(flags & 1), state[:512])

    @classmethod
    def from_headers(cls, headers: Headers | None) -> TraceContext | None:
        if not headers:
            return None
        parent = state = None
        for key, value in headers:
            if key == TRACEPARENT:
                parent = value
            elif key == TRACESTATE:
                state = value
        return cls.parse(parent, state)


def _new_span_id() -> int:
    return secrets.randbits(64) or 1


def _new_trace_id() -> int:
    return secrets.randbits(128) or 1


# -- set-up ------------------------------------------------------------------------------------------

_lock = threading.Lock()
_provider: TracerProvider | None = None
_tracer: Tracer | None = None
_ids: Any = None


def enabled() -> bool:
    return _tracer is not None


def configure_from_env(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on if the `OTEL_*` variables ask for it; True if it is on.

    Exporters: `otlp` (the default once an OTLP endpoint is set; HTTP/protobuf, the `otel` extra
    ships it), `console` (spans as JSON on stdout), `none`. `OTEL_SERVICE_NAME`,
    `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and `OTEL_BSP_*` are read by the SDK itself.
    """
    env = os.environ if env is None else env
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not names:
        names = ["otlp"] if endpoint else []
    names = [n for n in names if n != "none"]
    if not names or env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    try:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("OTEL_* asks for traces but OpenTelemetry is not installed (pip install 'headrace[otel]'); "
                    "tracing stays off")
        return False
    exporters: list[Any] = []
    for name in names:
        if name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol not in (None, "", "http/protobuf"):
                log.warning("OTLP protocol %r is not supported here; exporting with http/protobuf", protocol)
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:
                log.warning("the OTLP exporter is not installed (pip install 'headrace[otel]'); tracing stays off")
                return False
            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            log.warning("unknown OTEL_TRACES_EXPORTER %r ignored", name)
    if not exporters:
        return False
    _set_up(service_name, [BatchSpanProcessor(exporter) for exporter in exporters])
    log.info("tracing on: exporting spans with %s", ", ".join(names))
    return True


def install(exporter: SpanExporter, service_name: str = "headrace") -> TracerProvider:
    """Test hook: send every span to `exporter` as it ends (no batching), and turn tracing on."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    return _set_up(service_name, [SimpleSpanProcessor(exporter)])


def _set_up(service_name: str, processors: Iterable[Any]) -> TracerProvider:
    global _provider, _tracer, _ids
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    with _lock:
        ids = _preset_ids()
        resource = Resource.create({SERVICE_NAME: service_name})
        if os.environ.get("OTEL_SERVICE_NAME"):
            resource = Resource.create()  # the variable wins over our default name
        provider = TracerProvider(resource=resource, id_generator=ids)
        for processor in processors:
            provider.add_span_processor(processor)
        old = _provider
        _provider, _ids = provider, ids
        _tracer = provider.get_tracer(SCOPE)
        # The global provider too, so the API's middleware and the user's own spans share it. The
        # SDK lets the global be set once; later calls (tests) keep ours above for our own spans.
        trace.set_tracer_provider(provider)
    if old is not None:
        old.shutdown()
    return provider


def shutdown() -> None:
    """Flush and stop (process exit, end of a test)."""
    global _provider, _tracer
    with _lock:
        provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def tracer() -> Tracer | None:
    return _tracer


def current_context() -> TraceContext | None:
    """The caller's active span as a context to put on a record, if there is one.

    Also when a program set OpenTelemetry up itself (its own tracer provider) and starts workflows
    with the Python client: its active span is then the parent of the run. A program that never
    imported OpenTelemetry pays one dictionary lookup.
    """
    if _tracer is None and "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return TraceContext(ctx.trace_id, ctx.span_id, ctx.trace_flags.sampled, ctx.trace_state.to_header())


def headers_for_current() -> list[tuple[str, bytes]] | None:
    """Record headers carrying the caller's active span (None when there is none)."""
    ctx = current_context()
    return ctx.headers() if ctx is not None else None


def _preset_ids() -> Any:
    """The SDK's ID generator, except that the next span (and trace) ID can be set beforehand.

    The engine decides a span's IDs when its turn is applied (children are linked to it at once)
    and writes the span only after the transaction commits; the SDK's public `id_generator`
    extension point lets it keep the IDs it promised.
    """
    from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

    class PresetIds(IdGenerator):
        def __init__(self) -> None:
            self._random = RandomIdGenerator()
            self._local = threading.local()

        def preset(self, trace_id: int, span_id: int) -> None:
            self._local.ids = (trace_id, span_id)

        def clear(self) -> None:
            self._local.ids = None

        def generate_span_id(self) -> int:
            ids = getattr(self._local, "ids", None)
            return int(ids[1]) if ids is not None else self._random.generate_span_id()

        def generate_trace_id(self) -> int:
            ids = getattr(self._local, "ids", None)
            return int(ids[0]) if ids is not None else self._random.generate_trace_id()

    return PresetIds()


def otel_context(parent: TraceContext | None) -> Any:
    """An OpenTelemetry context whose current span is `parent` (None: a new trace)."""
    return _otel_parent(parent)


def _otel_parent(parent: TraceContext | None) -> Any:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    if parent is None:
        return Context()  # a new trace, whatever span happens to be current in this thread
    state = TraceState.from_header([parent.state]) if parent.state else None
    span = NonRecordingSpan(SpanContext(parent.trace_id, parent.span_id, is_remote=True,
                                        trace_flags=TraceFlags(TraceFlags.SAMPLED if parent.sampled else 0),
                                        trace_state=state))
    return trace.set_span_in_context(span)


def _links(links: Iterable[TraceContext]) -> list[Any]:
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    return [Link(SpanContext(c.trace_id, c.span_id, is_remote=True,
                             trace_flags=TraceFlags(TraceFlags.SAMPLED if c.sampled else 0))) for c in links]


def _set_error(span: Any, failure: FailureDetails | str) -> None:
    from opentelemetry.trace import Status, StatusCode

    if isinstance(failure, str):
        span.set_status(Status(StatusCode.ERROR, failure))
        return
    # The exception event of OpenTelemetry's semantic conventions
    # (https://opentelemetry.io/docs/specs/semconv/exceptions/exceptions-spans/).
    attributes = {"exception.type": failure.error_type, "exception.message": failure.message}
    if failure.stack_trace:
        attributes["exception.stacktrace"] = failure.stack_trace
    span.add_event("exception", attributes)
    span.set_status(Status(StatusCode.ERROR, f"{failure.error_type}: {failure.message}"))


# -- the engine's spans --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Span:
    """A span decided during a transaction, written once it commits."""

    name: str
    context: TraceContext
    parent: TraceContext | None
    start_ns: int
    end_ns: int
    kind: str
    attributes: dict[str, Any]
    error: FailureDetails | str | None = None
    links: tuple[TraceContext, ...] = ()


@dataclass(frozen=True, slots=True)
class _Run:
    """The trace of one workflow run: its span's context and that span's parent (the start command)."""

    span: TraceContext
    parent_span_id: int | None

    def status_headers(self) -> list[tuple[str, bytes]]:
        out = self.span.headers()
        if self.parent_span_id is not None:
            out.append((PARENT_SPAN_HEADER, f"{self.parent_span_id:016x}".encode("ascii")))
        return out

    @classmethod
    def from_headers(cls, headers: Headers) -> _Run | None:
        span = TraceContext.from_headers(headers)
        if span is None:
            return None
        parent = None
        for key, value in headers:
            if key == PARENT_SPAN_HEADER:
                try:
                    parent = int(value, 16) or None
                except ValueError:
                    parent = None
        return cls(span, parent)


@dataclass(slots=True)
class _Turn:
    iid: str
    run: _Run | None
    context: TraceContext | None
    started_ns: int
    input_type: str
    #: The senders' contexts when not the run's own (a result from a worker, an API command; several
    #: results applied in one turn link each).
    links: list[TraceContext]
    #: For a start: the run it begins if it applies (its `run_id` is then the command's ID).
    new_run: _Run | None = None
    command_id: str = ""


@dataclass(slots=True)
class PartitionTracer:
    """The traces of one engine partition's instances (see the module docstring).

    The partition owner calls, per input: `begin` before applying it, `headers()` for each work
    item and message its turn writes, `status_headers` for the instance's status record, `end`
    after it; then `committed()` once the transaction is in, or `discard()` before the next
    attempt. `restored` feeds it the status records' headers on restore.
    """

    partition: int
    runs: dict[str, _Run] = field(default_factory=dict)
    _spans: list[_Span] = field(default_factory=list)
    _turn: _Turn | None = None

    def clear(self) -> None:
        """Forget everything (before a restore)."""
        self.runs.clear()
        self.discard()

    def restored(self, state: InstanceState, headers: Headers | None) -> None:
        if headers and (state.is_running or state.status is RuntimeStatus.PENDING):
            run = _Run.from_headers(headers)
            if run is not None:
                self.runs[state.instance_id] = run

    def begin(self, message: InstanceMessage, headers: Headers | None) -> None:
        iid = message.instance_id
        incoming = TraceContext.from_headers(headers)
        run = self.runs.get(iid)
        new_run = None
        if isinstance(message, StartWorkflow):
            # A new run gets its own span, child of whoever sent the start (or of a new trace). A
            # start without a context over a PENDING instance is its scheduled start coming due:
            # it keeps the run the first start made.
            if incoming is not None:
                new_run = _Run(incoming.child(), incoming.span_id)
            elif run is not None:
                new_run = run
            else:
                new_run = _Run(TraceContext(_new_trace_id(), _new_span_id(), _sampled_root()), None)
            run, incoming = new_run, None
        links = [incoming] if incoming is not None and run is not None and incoming.trace_id != 0 else []
        self._turn = _Turn(iid, run, run.span.child() if run is not None else None, time.time_ns(),
                           type(message).__name__, links, new_run,
                           message.command_id if isinstance(message, StartWorkflow) else "")

    def link(self, headers: Headers | None) -> None:
        """Another input the current turn applies (results taken together): linked as the first is."""
        turn = self._turn
        incoming = TraceContext.from_headers(headers)
        if turn is not None and turn.run is not None and incoming is not None and incoming.trace_id != 0:
            turn.links.append(incoming)

    def headers(self) -> list[tuple[str, bytes]] | None:
        """Headers for a record the current turn writes (a work item, a child start, a message)."""
        turn = self._turn
        return turn.context.headers() if turn is not None and turn.context is not None else None

    def status_headers(self, state: InstanceState) -> list[tuple[str, bytes]] | None:
        """Headers for the instance's status record: its run's trace, kept for later turns."""
        if state.is_terminal:
            return None
        turn = self._turn
        if (turn is not None and turn.new_run is not None and turn.iid == state.instance_id
                and state.run_id == turn.command_id):
            return turn.new_run.status_headers()
        run = self.runs.get(state.instance_id)
        return run.status_headers() if run is not None else None

    def end(self, state: InstanceState | None, changed: bool) -> None:
        """The turn begun last ended with `state`; `changed`: it appended history events."""
        turn, self._turn = self._turn, None
        if turn is None:
            return
        if turn.new_run is not None:
            if state is None or state.run_id != turn.command_id:
                return  # the start was refused or ignored: the instance keeps its run, if any
            self.runs[turn.iid] = turn.new_run
        run, context = turn.run, turn.context
        if run is None or context is None:
            return
        if state is None:  # purged
            self.runs.pop(turn.iid, None)
            return
        now = time.time_ns()
        name = state.name
        if changed:
            attributes: dict[str, Any] = {"headrace.instance_id": turn.iid, "headrace.workflow": name,
                                          "headrace.partition": self.partition, "headrace.turn.input": turn.input_type}
            self._spans.append(_Span(f"turn {name}", context, run.span, turn.started_ns, now, "internal", attributes,
                                     links=tuple(turn.links)))
        if state.is_terminal:
            created = state.created_at
            start_ns = int(created.timestamp() * 1e9) if created is not None else turn.started_ns
            parent = run.span.child(run.parent_span_id) if run.parent_span_id is not None else None
            error: FailureDetails | str | None = None
            if state.status is RuntimeStatus.FAILED:
                error = state.failure if state.failure is not None else "failed"
            self._spans.append(_Span(f"workflow {name}", run.span, parent, min(start_ns, now), now, "server",
                                     {"headrace.instance_id": turn.iid, "headrace.workflow": name,
                                      "headrace.execution_id": state.execution_id,
                                      "headrace.status": state.status.value}, error))
            self.runs.pop(turn.iid, None)

    def failed_by_engine(self, state: InstanceState) -> None:
        """The engine ended the run itself (an input it had to set aside): its span ends, failed."""
        run = self.runs.pop(state.instance_id, None)
        if run is None:
            return
        now = time.time_ns()
        created = state.created_at
        start_ns = int(created.timestamp() * 1e9) if created is not None else now
        parent = run.span.child(run.parent_span_id) if run.parent_span_id is not None else None
        self._spans.append(_Span(f"workflow {state.name}", run.span, parent, min(start_ns, now), now, "server",
                                 {"headrace.instance_id": state.instance_id, "headrace.workflow": state.name,
                                  "headrace.execution_id": state.execution_id,
                                  "headrace.status": state.status.value},
                                 state.failure if state.failure is not None else "failed by the engine"))

    def forget(self, iid: str) -> None:
        self.runs.pop(iid, None)

    def discard(self) -> None:
        """Drop the spans of a transaction that did not commit (its turns will run again)."""
        self._spans.clear()
        self._turn = None

    def committed(self) -> None:
        spans, self._spans = self._spans, []
        for span in spans:
            _write(span)


def _sampled_root() -> bool:
    """Whether a new trace is sampled, as the configured sampler (OTEL_TRACES_SAMPLER) decides."""
    if _provider is None:
        return False
    from opentelemetry.sdk.trace.sampling import Decision

    result = _provider.sampler.should_sample(None, _new_trace_id(), "workflow")
    return result.decision is Decision.RECORD_AND_SAMPLE


def _write(span: _Span) -> None:
    """Hand a finished span to the SDK with the IDs it was given when its turn was applied."""
    tracer, ids = _tracer, _ids
    if tracer is None or ids is None or not span.context.sampled:
        return
    from opentelemetry.trace import SpanKind

    kind = {"server": SpanKind.SERVER, "consumer": SpanKind.CONSUMER}.get(span.kind, SpanKind.INTERNAL)
    ids.preset(span.context.trace_id, span.context.span_id)
    try:
        live = tracer.start_span(span.name, context=_otel_parent(span.parent), kind=kind, attributes=span.attributes,
                                 links=_links(span.links), start_time=span.start_ns)
    finally:
        ids.clear()
    if span.error is not None:
        _set_error(live, span.error)
    live.end(end_time=max(span.end_ns, span.start_ns))


# -- the worker's spans -------------------------------------------------------------------------------


class ActivitySpan:
    """One attempt of an activity, child of the turn that scheduled it (the work item's headers).

    `result_headers` go on the result record, so the engine's next turn links back to it.
    """

    __slots__ = ("_span", "context")

    def __init__(self, item: ActivityWorkItem, headers: Headers | None, partition: int) -> None:
        from opentelemetry.trace import SpanKind

        tracer = _tracer
        assert tracer is not None
        parent = TraceContext.from_headers(headers)
        self._span = tracer.start_span(
            f"activity {item.name}", context=_otel_parent(parent), kind=SpanKind.CONSUMER,
            attributes={"headrace.instance_id": item.instance_id, "headrace.activity": item.name,
                        "headrace.task_id": item.task_id, "headrace.execution_id": item.execution_id,
                        "headrace.partition": partition, "messaging.system": "kafka"})
        ctx = self._span.get_span_context()
        self.context = TraceContext(ctx.trace_id, ctx.span_id, ctx.trace_flags.sampled) if ctx.is_valid else None

    def result_headers(self) -> list[tuple[str, bytes]] | None:
        return self.context.headers() if self.context is not None else None

    def end(self, failure: FailureDetails | None) -> None:
        if failure is not None:
            _set_error(self._span, failure)
        self._span.end()
