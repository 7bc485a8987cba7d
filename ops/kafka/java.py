"""Finding Java 17+ and Maven, with messages instead of tracebacks when they are absent."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ops.kafka.errors import ToolMissing

MIN_JAVA = 17

_JAVA_HINT = (
    "Kafka 4 needs Java {min} or newer. Install a JDK or JRE (Debian: "
    "`apt-get install openjdk-17-jre-headless`) and put `java` on PATH or set JAVA_HOME."
)
_MAVEN_HINT = (
    "Maven (`mvn`) is needed once, to download the Kafka jars from Maven Central into the cache. "
    "Install it (Debian: `apt-get install maven`) and put it on PATH."
)
_VERSION_RE = re.compile(r'version "(?P<v>[^"]+)"')


@dataclass(frozen=True)
class JavaRuntime:
    executable: Path
    major: int
    version: str


def parse_java_major(version: str) -> int:
    """'17.0.15' -> 17, '1.8.0_392' -> 8, '25' -> 25."""
    parts = version.split(".")
    if parts[0] == "1" and len(parts) > 1:
        return int(parts[1])
    digits = re.match(r"\d+", parts[0])
    if digits is None:
        raise ValueError(f"unrecognised Java version {version!r}")
    return int(digits.group())


def _candidates(env: Mapping[str, str]) -> list[Path]:
    found: list[Path] = []
    if java_home := env.get("JAVA_HOME", "").strip():
        found.append(Path(java_home) / "bin" / "java")
    if on_path := shutil.which("java", path=env.get("PATH", "")):
        found.append(Path(on_path))
    return found


def find_java(env: Mapping[str, str] = os.environ) -> JavaRuntime:
    """Return the first Java runtime (JAVA_HOME first, then PATH) that is at least Java 17."""
    seen: list[str] = []
    for exe in _candidates(env):
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            seen.append(f"{exe} (not an executable file)")
            continue
        try:
            probe = subprocess.run(
                [str(exe), "-version"], capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            seen.append(f"{exe} ({exc})")
            continue
        match = _VERSION_RE.search(probe.stderr + probe.stdout)
        if match is None:
            seen.append(f"{exe} (no version in `java -version` output)")
            continue
        version = match.group("v")
        major = parse_java_major(version)
        if major >= MIN_JAVA:
            return JavaRuntime(executable=exe, major=major, version=version)
        seen.append(f"{exe} is Java {version}")
    detail = "; ".join(seen) if seen else "no `java` on PATH and JAVA_HOME is not set"
    raise ToolMissing(f"Java {MIN_JAVA}+ not found ({detail}). " + _JAVA_HINT.format(min=MIN_JAVA))


def find_maven(env: Mapping[str, str] = os.environ) -> Path:
    if maven_home := env.get("MAVEN_HOME", "").strip():
        candidate = Path(maven_home) / "bin" / "mvn"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which("mvn", path=env.get("PATH", ""))
    if on_path is None:
        raise ToolMissing("Maven not found. " + _MAVEN_HINT)
    return Path(on_path)
