"""The benchmark's workflows as a Dapr app writes them, for `headrace bench --via grpc`: run by
Dapr's Python SDK (dapr-ext-workflow, in its own venv: `ops.dapr_sdk`), connected to `headrace
grpc` by DAPR_GRPC_ENDPOINT, so their code runs in this process and Headrace keeps their history.

The same names and shapes as `ops.bench.apps` (the in-process path), so the two paths run the same
load. A script for the SDK's interpreter: it imports nothing of Headrace.
"""

from __future__ import annotations

import signal
import sys
import threading
from datetime import timedelta
from typing import Any


def main() -> None:
    # The SDK lives in the app's venv, not in Headrace's environment.
    from dapr.ext.workflow import WorkflowRuntime, when_all  # type: ignore[import-not-found,unused-ignore]

    def echo(ctx: Any, value: Any) -> Any:
        return value

    def chain(ctx: Any, args: dict[str, Any]) -> Any:
        value = args.get("payload", 0)
        for _ in range(int(args["steps"])):
            value = yield ctx.call_activity(echo, input=value)
        return len(value) if isinstance(value, str) else value

    def fan_out(ctx: Any, width: int) -> Any:
        results = yield when_all([ctx.call_activity(echo, input=i) for i in range(int(width))])
        return sum(results)

    def sleeper(ctx: Any, delay_s: float) -> Any:
        due = ctx.current_utc_datetime + timedelta(seconds=float(delay_s))
        yield ctx.create_timer(due)
        return (ctx.current_utc_datetime - due).total_seconds()

    runtime = WorkflowRuntime()
    runtime.register_activity(echo, name="bench_echo")
    runtime.register_workflow(chain, name="bench_chain")
    runtime.register_workflow(fan_out, name="bench_fan_out")
    runtime.register_workflow(sleeper, name="bench_timer")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runtime.start()
    # Ready once its work-item stream is open, so the benchmark's probe finds it connected.
    if not runtime.wait_for_worker_ready(timeout=120):
        sys.exit("the work-item stream did not open (is `headrace grpc` at DAPR_GRPC_ENDPOINT?)")
    print("bench app started", flush=True)
    try:
        stop.wait()
    finally:
        runtime.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
