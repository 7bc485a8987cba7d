"""The test apps on Dapr's Java and JavaScript SDKs (tests/grpc/java/: io.dapr:dapr-sdk-workflows
from Maven Central; tests/grpc/js/: @dapr/dapr from npm), built once into the cache the Kafka jars
use (`ops.kafka.paths.cache_root`), and the command lines that run them.

A build is keyed by a digest of the app's folder: a warm run never starts Maven or npm (the suite
stays fast and offline), an edit of the app builds it again. The build works on a copy of the
folder in the cache, so no `target/` or `node_modules/` lands in the repository; Maven resolves
through the user's own Maven repository, as `ops.kafka.jars` resolves the broker's jars.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ops.kafka.java import find_java, find_maven
from ops.kafka.locking import file_lock
from ops.kafka.paths import cache_root

__all__ = ["JAVA_SOURCE", "JS_SOURCE", "BuiltApp", "build", "cached", "reachable"]

HERE = Path(__file__).parent
JAVA_SOURCE = HERE / "java"
JS_SOURCE = HERE / "js"
_BUILD_TIMEOUT_S = 900  # a cold build fetches ~50 jars (or ~150 npm packages) and the tools' plugins


@dataclass(frozen=True)
class BuiltApp:
    """A built app: the folder it was built in, and how to run it there."""

    root: Path
    command: tuple[str, ...]

    def argv(self, *args: str) -> list[str]:
        return [*self.command, *args]


def _java_command(root: Path, env: Mapping[str, str]) -> tuple[str, ...]:
    classpath = f"{root / 'target' / 'classes'}{os.pathsep}{root / 'lib' / '*'}"
    return (str(find_java(env).executable), "-cp", classpath, "dev.headrace.sdktest.App")


def _js_command(root: Path, env: Mapping[str, str]) -> tuple[str, ...]:
    node = shutil.which("node", path=env.get("PATH"))
    if node is None:
        raise FileNotFoundError("node is not on PATH")
    return (node, str(root / "app.js"))


def _java_build(root: Path, env: dict[str, str]) -> list[str]:
    env.setdefault("JAVA_HOME", str(find_java(env).executable.resolve().parent.parent))
    return [str(find_maven(env)), "--batch-mode", "--no-transfer-progress", "-f", str(root / "pom.xml"), "package",
            "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={root / 'lib'}"]


def _js_build(root: Path, env: dict[str, str]) -> list[str]:
    npm = shutil.which("npm", path=env.get("PATH"))
    if npm is None:
        raise FileNotFoundError("npm is not on PATH")
    return [npm, "install", "--omit=dev", "--no-audit", "--no-fund", "--no-package-lock"]


_KINDS: dict[Path, tuple[str, Callable[[Path, dict[str, str]], list[str]],
                         Callable[[Path, Mapping[str, str]], tuple[str, ...]]]] = {
    JAVA_SOURCE: ("java-sdk-app", _java_build, _java_command),
    JS_SOURCE: ("js-sdk-app", _js_build, _js_command),
}


def _fingerprint(source: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(source)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _build_dir(source: Path, env: Mapping[str, str]) -> Path:
    return cache_root(env) / _KINDS[source][0] / _fingerprint(source)


def cached(source: Path, env: Mapping[str, str] = os.environ) -> BuiltApp | None:
    """The built app of `source` as it is now, or None when it has not been built yet."""
    root = _build_dir(source, env)
    if not (root / "complete.stamp").is_file():
        return None
    return BuiltApp(root, _KINDS[source][2](root, env))


def reachable(host: str, timeout_s: float = 5.0) -> bool:
    """Whether the registry a cold build needs answers (repo.maven.apache.org, registry.npmjs.org)."""
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def build(source: Path, env: Mapping[str, str] = os.environ) -> BuiltApp:
    """Build the app unless the cache holds this version of it; raise on a failed build."""
    if (hit := cached(source, env)) is not None:
        return hit
    root = _build_dir(source, env)
    with file_lock(root.with_suffix(".lock")):  # two sessions at once build it once
        if (hit := cached(source, env)) is not None:
            return hit
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(source, root)
        run_env = dict(env)
        argv = _KINDS[source][1](root, run_env)
        log = root / "build.log"
        with log.open("w") as out:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=run_env,
                                  cwd=root, timeout=_BUILD_TIMEOUT_S, check=False)
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise RuntimeError(f"could not build {source.name} (exit {done.returncode}); {log}\n{tail}")
        (root / "complete.stamp").write_text(_fingerprint(source) + "\n")
        return BuiltApp(root, _KINDS[source][2](root, env))
