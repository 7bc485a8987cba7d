"""The `headrace` command's options, settings declared once, and the process helper (no Kafka)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from api.settings import ApiSettings
from engine.settings import Settings, env_of, read_env
from ops.cli import build_parser
from ops.process import Child, ChildError, free_ports, identify, is_running
from tests.helpers import eventually


@pytest.mark.parametrize(
    "argv",
    [
        ["workflow", "list", "-o", "json", "--api-url", "http://api:1"],
        ["workflow", "-o", "json", "--api-url", "http://api:1", "list"],
        ["workflow", "-o", "table", "list", "--output", "json", "--api-url", "http://api:1"],
    ],
)
def test_workflow_options_are_accepted_before_and_after_the_verb(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.verb, args.output, args.api_url) == ("list", "json", "http://api:1")


def test_an_option_before_the_verb_is_not_reset_by_the_verbs_defaults() -> None:
    args = build_parser().parse_args(["workflow", "--timeout", "3", "get", "abc"])
    assert (args.timeout, args.output, args.instance_id) == (3.0, "table", "abc")


def test_the_command_line_parser_imports_no_client_or_server() -> None:
    # `headrace --help` stays instant, and every process starts sooner: its handler imports what
    # it runs. A fresh interpreter, as this one has imported everything already.
    heavy = ("aiokafka", "httpx", "uvicorn", "starlette", "grpc", "opentelemetry", "matplotlib", "engine")
    probe = ("import sys\nfrom ops.cli import build_parser\nbuild_parser()\n"
             f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).parents[2])
    assert found.stdout.strip() == "[]", found.stdout


def test_kafka_state_dir_is_accepted_after_the_verb(tmp_path: Path) -> None:
    assert build_parser().parse_args(["kafka", "up", "--state-dir", str(tmp_path)]).state_dir == str(tmp_path)
    assert build_parser().parse_args(["kafka", "--state-dir", str(tmp_path), "status"]).state_dir == str(tmp_path)


def test_every_setting_has_one_environment_variable_and_round_trips() -> None:
    names = [env_of(Settings, f.name).name for f in fields(Settings)]
    api_names = [env_of(ApiSettings, f.name).name for f in fields(ApiSettings) if f.name != "engine"]
    assert len(set(names + api_names)) == len(names) + len(api_names)
    custom = Settings(topic_prefix="", partitions=3, stall_seconds=2.5, sasl_username="u")
    assert Settings.from_env(custom.to_env()) == custom


@pytest.mark.parametrize(
    ("cls", "env", "message"),
    [
        (Settings, {"HEADRACE_PARTITIONS": "eight"}, "HEADRACE_PARTITIONS must be an integer"),
        (Settings, {"HEADRACE_STALL_SECONDS": "soon"}, "HEADRACE_STALL_SECONDS must be a number"),
        (ApiSettings, {"HEADRACE_API_PORT": "0"}, "HEADRACE_API_PORT must be at least 1"),
        (ApiSettings, {"HEADRACE_API_APPLY_WAIT_S": "-1"}, "HEADRACE_API_APPLY_WAIT_S must be positive"),
    ],
)
def test_a_bad_value_names_its_variable(cls: type, env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_env(cls, env)


def test_blank_means_the_default_except_for_the_topic_prefix() -> None:
    settings = Settings.from_env({"HEADRACE_PARTITIONS": " ", "HEADRACE_TOPIC_PREFIX": "", "KAFKA_SASL_USERNAME": ""})
    assert (settings.partitions, settings.topic_prefix, settings.sasl_username) == (8, "", None)


def test_free_ports_are_distinct() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5 and all(0 < p < 65536 for p in ports)


def test_child_waits_for_its_line_and_stops_with_sigterm(tmp_path: Path) -> None:
    program = "import signal, sys, time; print('up', flush=True); time.sleep(60)"
    child = Child([sys.executable, "-c", program], tmp_path / "child.log", label="sleeper")
    ref = child.start()
    try:
        child.wait_ready("up", timeout_s=30, interval_s=0.02)
        assert is_running(ref) and identify(child.pid) == ref
    finally:
        assert child.stop(grace_s=10)  # the default SIGTERM handler ends it within the grace
    assert child.returncode == -signal.SIGTERM
    assert not is_running(ref)


_PARENT = """
import ctypes, os, sys
from pathlib import Path
from ops.process import Child
# gRPC's fork handler (pthread_atfork) ran in an engine child between fork and exec and hung it:
# a child handler here that ends the process at once shows whether one runs before the exec.
libc = ctypes.CDLL(None)
assert libc["__register_atfork"](None, None, ctypes.cast(libc._exit, ctypes.c_void_p), None) == 0
# The ready line is not in the command line (which the log's start line holds).
program = "import time; print('rea' + 'dy', flush=True); time.sleep(60)"
child = Child([sys.executable, "-c", program], Path(sys.argv[1]), label="grandchild", die_with_parent=True)
child.start()
child.wait_ready("ready", timeout_s=30, interval_s=0.02)
print(child.pid, flush=True)
os._exit(0)
"""


def test_a_child_tied_to_its_parent_runs_no_fork_handler_before_exec_and_dies_with_the_parent(tmp_path: Path) -> None:
    parent = subprocess.run([sys.executable, "-c", _PARENT, str(tmp_path / "grandchild.log")], capture_output=True,
                            text=True, timeout=60, check=False)
    assert parent.returncode == 0, parent.stderr + (tmp_path / "grandchild.log").read_text()
    grandchild = identify(int(parent.stdout.split()[-1]))
    eventually(lambda: grandchild is None or not is_running(grandchild), timeout=30,
               message="the grandchild outlived the process that started it")


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("program", ["bare", "path", "not executable"])
def test_a_program_that_cannot_run_is_refused_at_start_as_popen_does(tmp_path: Path, tied: bool,
                                                                      program: str) -> None:
    if program == "not executable":
        target = tmp_path / "script"
        target.write_text("#!/bin/sh\n")
        argv, error = [str(target)], PermissionError
    else:
        argv = ["headrace-no-such-program" if program == "bare" else str(tmp_path / "missing")]
        error = FileNotFoundError
    child = Child(argv, tmp_path / "child.log", die_with_parent=tied)
    with pytest.raises(error):
        child.start()


def test_a_tied_child_gets_the_signals_and_locale_it_would_get_untied(tmp_path: Path) -> None:
    """Python, in between, ignores SIGPIPE and SIGXFSZ and sets LC_CTYPE for itself (PEP 538)."""
    program = ["sh", "-c", 'grep SigIgn /proc/$$/status; echo "ctype=${LC_CTYPE-unset}"; sleep 30']
    seen = {}
    for tied in (False, True):
        child = Child(program, tmp_path / f"{tied}.log", env={"PATH": os.environ["PATH"], "LANG": "C"},
                      die_with_parent=tied)
        child.start()
        try:
            child.wait_ready("ctype=", timeout_s=30, interval_s=0.02)
            seen[tied] = child.log_text()
        finally:
            child.kill()
    assert "ctype=unset" in seen[False]
    assert seen[True] == seen[False]


def test_child_that_exits_while_starting_says_so_with_its_output(tmp_path: Path) -> None:
    child = Child([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], tmp_path / "child.log", label="bad")
    child.start()
    with pytest.raises(ChildError, match=r"bad exited with 3 while starting:\n.*boom"):
        child.wait_ready("never printed", timeout_s=30, interval_s=0.02)
    assert child.starts == 1


def test_an_engine_needs_an_app_unless_every_workflow_runs_in_connected_apps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ops.engine_cli import _run
    from ops.errors import OpsError

    monkeypatch.delenv("HEADRACE_REMOTE_WORKFLOWS", raising=False)
    args = build_parser().parse_args(["engine"])
    assert args.app is None
    with pytest.raises(OpsError, match="HEADRACE_REMOTE_WORKFLOWS"):
        _run(args)
    with pytest.raises(SystemExit):  # a worker always needs its activities' code
        build_parser().parse_args(["worker"])
