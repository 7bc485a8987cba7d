"""`--via api`'s compiled load generator: the Go program in `loadgen/`, built on demand, driven here.

A Python HTTP client costs more CPU per start than the API it measures (6.2 ms against 2.75 in
issue 17's first run), so on a 2-core machine it measured mostly itself. Dapr's perf suite drives
daprd with k6, a Go program (https://github.com/dapr/dapr/tree/master/tests/perf); k6 is AGPL, so
this is a small one of our own: the standard library's net/http on keep-alive connections. It is
built with `go build` into a cache directory the first time (offline: no module is downloaded,
GOPROXY=off, GOTOOLCHAIN=local), and the load generator (`load.py`) keeps deciding what to start
and when; this module only hands each start to the Go process and reads back its result.
Without Go, `build` says why and the bench falls back to the Python client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GoStarter", "Reply", "build"]

SOURCE = Path(__file__).with_name("loadgen")
_FILES = ("go.mod", "main.go")
#: Bounds a first build (a cold Go build cache compiles net/http: tens of seconds on a busy machine).
_BUILD_TIMEOUT_S = 300.0


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "headrace" / "bench"


#: What `build` found per `go` on PATH (None: none), so a run of many scenarios notes a fallback once.
_built: dict[str | None, Path | None] = {}


def build(note: Callable[[str], None] = print) -> Path | None:
    """The load generator's binary, built if this source and Go version have none yet; None (and
    a note saying why, once per process) when Go is absent or the build fails."""
    go = shutil.which("go")
    if go not in _built:
        _built[go] = _build(go, note)
    return _built[go]


def _build(go: str | None, note: Callable[[str], None]) -> Path | None:
    if go is None:
        note("--via api: `go` is not on PATH, so the starts go through the Python HTTP client "
             "(install Go for the compiled load generator: https://go.dev/dl/)")
        return None
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOPROXY": "off", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    if "GOCACHE" not in env and "HOME" not in env:
        env["GOCACHE"] = str(_cache_dir() / "go-build")
    try:
        version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, env=env,
                                 timeout=60, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        note(f"--via api: `go env GOVERSION` failed ({exc}); using the Python HTTP client")
        return None
    digest = hashlib.sha256(version.encode())
    for name in _FILES:
        digest.update((SOURCE / name).read_bytes())
    binary = _cache_dir() / f"loadgen-{digest.hexdigest()[:16]}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    # Built beside its final name and renamed: two benches building at once never run half a file.
    fd, partial = tempfile.mkstemp(prefix=binary.name + ".", dir=binary.parent)
    os.close(fd)
    try:
        done = subprocess.run([go, "build", "-trimpath", "-o", partial, "."], cwd=SOURCE, env=env,
                              capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S, check=False)
        if done.returncode != 0:
            note(f"--via api: building the Go load generator failed; using the Python HTTP client:\n"
                 f"{(done.stdout + done.stderr).strip()[-2000:]}")
            return None
        Path(partial).replace(binary)
    except (OSError, subprocess.SubprocessError) as exc:
        note(f"--via api: building the Go load generator failed ({exc}); using the Python HTTP client")
        return None
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(partial).unlink()
    return binary


@dataclass(frozen=True, slots=True)
class Reply:
    """One request's result: monotonic seconds (the clock of `time.monotonic`), the HTTP status
    (0: no response) and, for anything but a 202, what came back instead."""

    instance_id: str
    sent: float
    done: float
    status: int
    error: str


def parse_reply(line: bytes) -> Reply:
    iid, sent, done, status, *why = line.decode().split(" ", 4)
    return Reply(iid, int(sent) / 1e9, int(done) / 1e9, int(status), why[0] if why else "")


class GoStarter:
    """One running load generator: `start` queues a start, `on_reply` hears of each result."""

    def __init__(self, process: asyncio.subprocess.Process, body: Path) -> None:
        self.process = process
        self._body = body
        self._lines: list[bytes] = []
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, binary: Path, urls: list[str], workflow: str, body: str | None, connections: int, log: Path
    ) -> GoStarter:
        log.parent.mkdir(parents=True, exist_ok=True)
        body_file = log.with_suffix(".body")
        body_file.write_text(body or "")
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                str(binary), "-urls", ",".join(urls), "-workflow", workflow, "-body", str(body_file),
                "-connections", str(connections),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
            )
        return cls(process, body_file)

    @property
    def pid(self) -> int:
        return self.process.pid

    def follow(self, on_reply: Callable[[Reply], None]) -> None:
        self._reader = asyncio.create_task(self._read(on_reply))

    async def _read(self, on_reply: Callable[[Reply], None]) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        rest = b""
        while chunk := await stdout.read(1 << 16):
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                on_reply(parse_reply(line))

    def start(self, instance_id: str, body: str | None = None) -> None:
        """Queue one start (`body`: its own input, else the one given to `open`)."""
        if not self._lines:
            # One write per loop iteration, not one per start.
            asyncio.get_running_loop().call_soon(self._flush)
        self._lines.append(f"{instance_id}\n".encode() if body is None else f"{instance_id} {body}\n".encode())

    def _flush(self) -> None:
        stdin = self.process.stdin
        if self._lines and stdin is not None and not stdin.is_closing():
            stdin.write(b"".join(self._lines))
        self._lines.clear()

    async def close(self, timeout_s: float = 30.0) -> None:
        """Finish: the requests in flight complete and are reported, then the process exits."""
        self._flush()
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(b"stop\n")
            with contextlib.suppress(ConnectionError):
                await stdin.drain()
            stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._body.unlink(missing_ok=True)
