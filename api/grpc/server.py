"""`headrace grpc`: durabletask's `TaskHubSidecarService` on port 50001 (daprd's gRPC port), so Dapr's
SDK clients (`dapr.ext.workflow.DaprWorkflowClient` and the other languages' clients) work
unchanged, pointed at it with `DAPR_GRPC_ENDPOINT` or `DAPR_GRPC_PORT`.

A process of its own, built like the REST API's (the same settings, Kafka link and `Gateway`), so
it scales and fails the same way; see docs/grpc.md. Registration stays cheap: grpcio is imported
when the command runs (it is the `grpc` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

    from engine.runtime.worker import ActivityExecutor, ActivityWorker, WorkSource
    from engine.settings import Settings
    from ops.command import Subcommands

    from ..gateway import Gateway
    from ..settings import ApiSettings

__all__ = ["DEFAULT_GRPC_PORT", "TOKEN_HEADER", "GrpcServer", "register", "running", "serve"]

log = logging.getLogger(__name__)

#: daprd's default gRPC port (`--dapr-grpc-port`), which Dapr's SDKs use without configuration.
DEFAULT_GRPC_PORT = 50001
#: The metadata key Dapr's SDKs send `DAPR_API_TOKEN` in (the REST API's header).
TOKEN_HEADER = "dapr-api-token"  # noqa: S105  # a header name, not a secret


def _token_interceptor(token: str) -> grpc.aio.ServerInterceptor:
    """Every call needs `dapr-api-token: <token>` (compared in constant time), as daprd's gRPC API
    does when `DAPR_API_TOKEN` is set; else UNAUTHENTICATED with daprd's message."""
    import grpc

    expected = token.encode()

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication error: api token mismatch")

    class TokenInterceptor(grpc.aio.ServerInterceptor):
        async def intercept_service(
            self,
            continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
            details: grpc.HandlerCallDetails,
        ) -> grpc.RpcMethodHandler[Any, Any] | None:
            given = dict(details.invocation_metadata or ()).get(TOKEN_HEADER)
            raw = given.encode() if isinstance(given, str) else given
            handler = await continuation(details)
            if handler is None or (raw is not None and hmac.compare_digest(raw, expected)):
                return handler
            if handler.response_streaming:
                # grpc.aio takes a coroutine for a streaming handler too (it writes with context.write).
                return grpc.unary_stream_rpc_method_handler(refuse)
            return grpc.unary_unary_rpc_method_handler(refuse)

    return TokenInterceptor()


@dataclass
class GrpcServer:
    """A started server: its bound port, and the gateway it answers over."""

    server: grpc.aio.Server
    port: int
    gateway: Gateway


class _ActivitySupervisor:
    """Runs an `ActivityWorker` over the connected apps (activities, or with `source` the turns of
    remote workflows), and a new one after a Kafka failure (the worker's own loop rides out a broker
    outage once running; its start does not), until stopped."""

    def __init__(self, settings: Settings, executor: ActivityExecutor, source: WorkSource | None = None) -> None:
        self.settings = settings
        self.executor = executor
        self.source = source
        self.worker: ActivityWorker | None = None
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        from aiokafka.errors import KafkaError

        from engine.runtime.worker import ActivityWorker
        from engine.sdk.registry import Registry

        while not self.stopping.is_set():
            self.worker = ActivityWorker(Registry(), self.settings, executor=self.executor, source=self.source)
            try:
                await self.worker.run()
                return
            except KafkaError as exc:
                log.warning("the worker for connected apps stopped (%s); starting it again", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=1.0)  # back-off while Kafka is away

    def stop(self) -> None:
        """Stop fetching; items in flight get the grace period, then the rest is abandoned."""
        self.stopping.set()
        if self.worker is not None:
            self.worker.stop()


@contextlib.asynccontextmanager
async def running(
    settings: ApiSettings, host: str = "127.0.0.1", port: int = DEFAULT_GRPC_PORT, activities: Sequence[str] = (),
    workflows: bool | None = None,
) -> AsyncIterator[GrpcServer]:
    """Serve on `host:port` (0: any free port) while the block runs; Kafka connects in the
    background, as the REST API's link does (calls fail UNAVAILABLE until it is there). With
    `activities`, also run an activity worker that hands those activities to connected apps; with
    `workflows` (default: when HEADRACE_REMOTE_WORKFLOWS names any), a worker that hands them the
    turns of remote workflows (`engine.core.remote`)."""
    import grpc

    from engine.runtime.worker import WorkSource
    from engine.topics import Topics
    from engine.wire.records import decode_workflow_item

    from ..gateway import Gateway
    from ..kafka import KafkaLink
    from ..metrics import ApiMetrics
    from .protos import orchestrator_service_pb2_grpc as pb_grpc
    from .service import SidecarService
    from .work import RemoteActivities, RemoteWorkflows, WorkStreams

    engine = settings.engine
    if workflows is None:
        workflows = bool(engine.remote_workflow_names)
    link = KafkaLink(settings)
    gateway = Gateway(link, ApiMetrics())
    interceptors = [_token_interceptor(settings.api_token)] if settings.api_token else []
    server = grpc.aio.server(interceptors=interceptors)
    streams = WorkStreams()
    remote = RemoteActivities(activities, streams) if activities else None
    turns = RemoteWorkflows(streams, engine.max_payload_bytes) if workflows else None
    supervisors: list[_ActivitySupervisor] = []
    if remote is not None:
        supervisors.append(_ActivitySupervisor(engine, remote))
    if turns is not None:
        source = WorkSource(Topics.for_settings(engine).orchestrations, engine.topic("grpc.orchestrations"),
                            decode_workflow_item)
        supervisors.append(_ActivitySupervisor(engine, turns, source))
    pb_grpc.add_TaskHubSidecarServiceServicer_to_server(  # type: ignore[no-untyped-call]
        SidecarService(gateway, remote, turns), server
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    link.start()
    await server.start()
    working = [asyncio.create_task(s.run(), name="headrace-grpc-work") for s in supervisors]
    log.info("serving TaskHubSidecarService on %s:%d%s%s", host, bound,
             f" (activities for connected apps: {', '.join(sorted(activities))})" if activities else "",
             " (turns of remote workflows for connected apps)" if turns is not None else "")
    try:
        yield GrpcServer(server, bound, gateway)
    finally:
        for supervisor in supervisors:
            supervisor.stop()
        for task in working:
            try:
                # Bounded: a worker still connecting to Kafka does not see the stop until it is in.
                await asyncio.wait_for(task, engine.shutdown_grace_seconds + 5)
            except TimeoutError:
                log.warning("a worker for connected apps did not stop in time; its unfinished items are "
                            "delivered again")
            except Exception:
                log.exception("a worker for connected apps failed while stopping")
        await server.stop(grace=2.0)
        await gateway.close()
        await link.stop()


def serve(
    host: str | None, port: int | None, log_level: str | None, log_format: str | None, activities: Sequence[str] = (),
    workflows: Sequence[str] = (),
) -> int:
    import os
    import signal

    from engine.runtime import kafka_protocol
    from engine.runtime.logs import configure_logging
    from ops.errors import OpsError

    try:
        import grpc  # noqa: F401
    except ImportError:
        raise OpsError("`headrace grpc` needs the grpc extra: pip install 'headrace[grpc]'") from None

    from ..settings import ApiSettings

    if workflows:  # `--workflow`: the same setting the engine reads
        os.environ["HEADRACE_REMOTE_WORKFLOWS"] = ",".join(workflows)
    settings = ApiSettings.from_env(log_level=log_level)
    configure_logging(settings.log_level, log_format=log_format)
    kafka_protocol.install()  # as the engine's processes do (`engine.runtime.eventloop`)
    bind_host = host or os.environ.get("HEADRACE_GRPC_HOST") or settings.host
    bind_port = port if port is not None else int(os.environ.get("HEADRACE_GRPC_PORT") or DEFAULT_GRPC_PORT)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Stop accepting calls and let running ones finish (a grace period), then close Kafka.
            loop.add_signal_handler(sig, stop.set)
        served = list(activities) or [
            a.strip() for a in os.environ.get("HEADRACE_GRPC_ACTIVITIES", "").split(",") if a.strip()
        ]
        async with running(settings, bind_host, bind_port, served):
            await stop.wait()

    asyncio.run(main())
    return 0


def _handle(args: argparse.Namespace) -> int:
    return serve(args.host, args.port, args.log_level, args.log_format, args.activity, args.workflow)


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_parser(
        "grpc",
        help=f"serve durabletask's gRPC protocol for Dapr SDK clients (preview, default port {DEFAULT_GRPC_PORT})",
        description="Serve TaskHubSidecarService, the protocol of Dapr's workflow SDKs, for their clients "
        "(start, get, wait, raise event, suspend, resume, terminate, purge, list). Kafka and topics come "
        "from KAFKA_BOOTSTRAP_SERVERS, HEADRACE_TOPIC_PREFIX, ...; DAPR_API_TOKEN turns on token auth. "
        "Needs the `grpc` extra (pip install 'headrace[grpc]').",
    )
    parser.add_argument("--host", default=None, help="address to bind (default $HEADRACE_GRPC_HOST, "
                        "$HEADRACE_API_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port (default $HEADRACE_GRPC_PORT or {DEFAULT_GRPC_PORT})")
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["text", "json"],
                        help="text lines, or one JSON object per line (default $HEADRACE_LOG_FORMAT or text)")
    parser.add_argument("--activity", action="append", default=[], metavar="NAME",
                        help="an activity that connected apps (their WorkflowRuntime) run: its work items go "
                        "to them over GetWorkItems (repeat; default $HEADRACE_GRPC_ACTIVITIES, comma-separated)")
    parser.add_argument("--workflow", action="append", default=[], metavar="NAME",
                        help="a workflow whose code connected apps run: its turns go to them over GetWorkItems "
                        "(repeat; `*` for every name the engine does not know; default $HEADRACE_REMOTE_WORKFLOWS, "
                        "which the engine must be given too)")
    parser.set_defaults(handler=_handle)
