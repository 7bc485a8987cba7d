"""`headrace workflow start|get|list|history|raise-event|pause|resume|terminate|purge`.

A client of the REST API (like Dapr's `dapr workflow` CLI), not of Kafka: it works against any
deployment it can reach over HTTP. Readable tables by default, the API's JSON with `--output json`.
Registration is cheap; httpx is imported when a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ops.command import Subcommands, group_options

__all__ = ["register"]

DEFAULT_URL = "http://localhost:3500"
_BASE = "/v1.0/workflows/dapr"


class _Failed(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _request(
    args: argparse.Namespace,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    import httpx

    from api.settings import ApiSettings
    from engine.settings import read_env

    token = args.token if args.token is not None else read_env(ApiSettings, os.environ, "api_token").get("api_token")
    headers = {"dapr-api-token": token} if token else {}
    if body is not None:
        headers["content-type"] = "application/json"
    url = args.api_url.rstrip("/") + path
    try:
        response = httpx.request(
            method, url, content=body, params=params, headers=headers, timeout=args.timeout
        )
    except httpx.HTTPError as exc:
        raise _Failed(f"cannot reach the Headrace API at {args.api_url}: {exc}", 2) from None
    if response.status_code >= 400:
        try:
            error = response.json()
            detail = f"{error['message']} [{error['errorCode']}, HTTP {response.status_code}]"
        except (ValueError, KeyError, TypeError):
            detail = f"HTTP {response.status_code}: {response.text[:500]}"
        raise _Failed(detail)
    return response.json() if response.content else {}


# -- output ---------------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


def _age(timestamp: str) -> str:
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- commands -------------------------------------------------------------------------------------


def _input(args: argparse.Namespace) -> bytes | None:
    if getattr(args, "input_file", None):
        return Path(args.input_file).read_bytes()
    value = getattr(args, "input", None) if hasattr(args, "input") else getattr(args, "data", None)
    return None if value is None else value.encode()


def _start(args: argparse.Namespace) -> None:
    params = {"instanceID": args.instance_id} if args.instance_id else None
    body = _request(args, "POST", f"{_BASE}/{args.name}/start", body=_input(args), params=params)
    if args.output == "json":
        _print_json(body)
    else:
        print(f"Started workflow '{args.name}' as instance {body['instanceID']}")


def _get(args: argparse.Namespace) -> None:
    body = _request(args, "GET", f"{_BASE}/{args.instance_id}")
    if args.output == "json":
        _print_json(body)
        return
    rows = [
        ("Instance ID", body["instanceID"]),
        ("Workflow", body["workflowName"]),
        ("Status", body["runtimeStatus"]),
        ("Created", body["createdAt"]),
        ("Last updated", body["lastUpdatedAt"]),
    ]
    labels = {
        "dapr.workflow.input": "Input",
        "dapr.workflow.output": "Output",
        "dapr.workflow.custom_status": "Custom status",
        "dapr.workflow.failure.error_type": "Error type",
        "dapr.workflow.failure.error_message": "Error message",
        "headrace.workflow.waiting_for_code": "Waiting",
        "headrace.workflow.remote_turn": "Turn out",
    }
    props = body.get("properties", {})
    rows += [(label, props[key]) for key, label in labels.items() if key in props]
    width = max(len(label) for label, _ in rows)
    print("\n".join(f"{label.ljust(width)}  {value}" for label, value in rows))
    trace = props.get("dapr.workflow.failure.stack_trace")
    if trace:
        print(f"\nStack trace:\n{trace.rstrip()}")


def _list(args: argparse.Namespace) -> None:
    params: dict[str, Any] = {"pageSize": args.page_size}
    if args.status:
        params["runtimeStatus"] = [s.upper() for s in args.status]
    for key, value in (
        ("workflowName", args.name),
        ("createdAfter", args.created_after),
        ("createdBefore", args.created_before),
        ("continuationToken", args.continuation_token),
    ):
        if value:
            params[key] = value
    instances: list[dict[str, Any]] = []
    while True:
        page = _request(args, "GET", _BASE, params=params)
        instances += page["instances"]
        token = page.get("continuationToken")
        if not args.all or not token:
            break
        params["continuationToken"] = token
    if args.output == "json":
        _print_json(
            {
                "instances": instances,
                **({"continuationToken": token} if token and not args.all else {}),
            }
        )
        return
    rows = [
        (
            i["instanceID"],
            i["workflowName"],
            i["runtimeStatus"],
            i["createdAt"],
            _age(i["createdAt"]),
        )
        for i in instances
    ]
    print(
        _table(("INSTANCE ID", "WORKFLOW", "STATUS", "CREATED", "AGE"), rows)
        if rows
        else "No instances."
    )
    if token and not args.all:
        print(f"\nMore: --continuation-token {token} (or --all)", file=sys.stderr)


_DETAIL_FIELDS = (
    "name",
    "input",
    "result",
    "status",
    "fire_at",
    "instance_id",
    "output",
    "reason",
    "custom_status",
    "task_scheduled_id",
    "timer_id",
)


def _history(args: argparse.Namespace) -> None:
    body = _request(args, "GET", f"{_BASE}/{args.instance_id}/history")
    if args.output == "json":
        _print_json(body)
        return
    rows = []
    for event in body["events"]:
        details = [
            f"{k}={_short(event[k], 40)}" for k in _DETAIL_FIELDS if event.get(k) not in (None, -1)
        ]
        if event.get("failure"):
            details.append(f"failure={_short(event['failure'].get('message', ''), 40)}")
        rows.append((str(event["seq"]), str(event["timestamp"]), event["type"], " ".join(details)))
    print(_table(("SEQ", "TIME", "EVENT", "DETAILS"), rows) if rows else "No history events (yet).")


def _command(verb: str, done: str) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        suffix = f"raiseEvent/{args.event_name}" if verb == "raise-event" else verb
        body = _request(
            args,
            "POST",
            f"{_BASE}/{args.instance_id}/{suffix}",
            body=_input(args) if verb == "raise-event" else None,
        )
        if args.output == "json":
            _print_json(body)
        else:
            print(
                f"{done} {args.instance_id}"
                + (f" ('{args.event_name}')" if verb == "raise-event" else "")
            )

    return run


def _handler(run: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        try:
            run(args)
        except _Failed as exc:
            print(f"headrace: error: {exc}", file=sys.stderr)
            return exc.exit_code
        return 0

    return handle


def _connection_options(target: argparse.ArgumentParser, default: Callable[[Any], Any]) -> None:
    target.add_argument(
        "--api-url",
        default=default(os.environ.get("HEADRACE_API_URL", DEFAULT_URL)),
        help=f"the API's address (default $HEADRACE_API_URL or {DEFAULT_URL})",
    )
    target.add_argument(
        "--token",
        # None: `_request` reads the API's own variable then (engine's settings are not imported at
        # registration, which must stay cheap).
        default=default(None),
        help="value of the dapr-api-token header (default $DAPR_API_TOKEN)",
    )
    target.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default=default("table"),
        help="readable tables (default) or the API's JSON",
    )
    target.add_argument("--timeout", type=float, default=default(30.0), help="seconds per request")


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_parser(
        "workflow", help="start, inspect and steer workflows through the REST API"
    )
    shared = group_options(parser, _connection_options)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb_parser(name: str, text: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=text, parents=[shared])

    start = verb_parser("start", "start an instance of a workflow")
    start.add_argument("name", help="the workflow's registered name")
    start.add_argument("--instance-id", help="the instance ID (a UUID when omitted)")
    given = start.add_mutually_exclusive_group()
    given.add_argument("--input", help="the input: JSON, or any text (passed as a string)")
    given.add_argument("--input-file", help="read the input from this file")
    start.set_defaults(handler=_handler(_start))

    get = verb_parser("get", "show one instance")
    get.add_argument("instance_id")
    get.set_defaults(handler=_handler(_get))

    listing = verb_parser("list", "list instances, oldest first")
    listing.add_argument("--status", action="append",
                         help="only this runtime status (repeatable), e.g. RUNNING, STALLED, FAILED")
    listing.add_argument("--name", help="only instances of this workflow")
    listing.add_argument("--created-after", help="RFC 3339 timestamp")
    listing.add_argument("--created-before", help="RFC 3339 timestamp")
    listing.add_argument("--page-size", type=int, default=100)
    listing.add_argument("--continuation-token", help="continue a previous listing")
    listing.add_argument("--all", action="store_true", help="follow continuation tokens to the end")
    listing.set_defaults(handler=_handler(_list))

    history = verb_parser("history", "show an instance's history events")
    history.add_argument("instance_id")
    history.set_defaults(handler=_handler(_history))

    raise_event = verb_parser("raise-event", "raise an event to an instance")
    raise_event.add_argument("instance_id")
    raise_event.add_argument("event_name")
    raise_event.add_argument("--data", help="the event payload: JSON, or any text")
    raise_event.set_defaults(handler=_handler(_command("raise-event", "Event accepted for")))

    for verb, text, done in (
        ("pause", "pause (suspend) an instance", "Pause accepted for"),
        ("resume", "resume a paused instance", "Resume accepted for"),
        ("terminate", "terminate an instance and its children", "Terminate accepted for"),
        ("purge", "remove a finished instance and its children", "Purge accepted for"),
    ):
        sub = verb_parser(verb, text)
        sub.add_argument("instance_id")
        sub.set_defaults(handler=_handler(_command(verb, done)))
