"""Resolving the Kafka broker jars from Maven Central, once per version, into a shared cache.

A cache entry is complete only when its stamp file matches the pom that produced it; a warm start
never runs Maven at all, so it cannot download anything.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ops.kafka.errors import JarResolutionFailed
from ops.kafka.java import JavaRuntime, find_maven
from ops.kafka.locking import file_lock
from ops.kafka.paths import cache_root

POM = Path(__file__).with_name("pom.xml")
# Generous: a cold Maven run on a slow mirror fetches ~40 MB of jars and plugins.
_MAVEN_TIMEOUT_S = 900


@dataclass(frozen=True)
class KafkaJars:
    version: str
    lib_dir: Path

    @property
    def classpath(self) -> str:
        return str(self.lib_dir / "*")


@dataclass(frozen=True)
class Resolution:
    jars: KafkaJars
    downloaded: bool


def _fingerprint(version: str) -> str:
    digest = hashlib.sha256(POM.read_bytes())
    digest.update(version.encode())
    return digest.hexdigest()


def version_dir(version: str, env: Mapping[str, str] = os.environ) -> Path:
    return cache_root(env) / "kafka" / version


def cached_jars(version: str, env: Mapping[str, str] = os.environ) -> KafkaJars | None:
    """The cached jars for `version`, or None when the cache is cold or stale."""
    root = version_dir(version, env)
    stamp = root / "complete.stamp"
    lib = root / "lib"
    try:
        complete = stamp.read_text().strip() == _fingerprint(version)
    except FileNotFoundError:
        return None
    if complete and (lib / f"kafka_2.13-{version}.jar").is_file():
        return KafkaJars(version=version, lib_dir=lib)
    return None


def resolve_jars(
    version: str,
    java: JavaRuntime,
    *,
    env: Mapping[str, str] = os.environ,
    log: Callable[[str], None] = lambda _msg: None,
) -> Resolution:
    """Return the Kafka jars for `version`, running Maven only when the cache lacks them."""
    if (hit := cached_jars(version, env)) is not None:
        return Resolution(jars=hit, downloaded=False)
    root = version_dir(version, env)
    # Two processes (a test session and `headrace kafka up`) may resolve at the same moment.
    with file_lock(root.with_suffix(".lock")):
        if (hit := cached_jars(version, env)) is not None:
            return Resolution(jars=hit, downloaded=False)
        mvn = find_maven(env)
        root.mkdir(parents=True, exist_ok=True)
        staging = root / "lib.partial"
        shutil.rmtree(staging, ignore_errors=True)
        # Maven runs on a copy of the pom so that no `target/` or state lands in the repository.
        pom = root / "pom.xml"
        shutil.copyfile(POM, pom)
        log(f"Resolving Apache Kafka {version} jars from Maven Central (first run only)...")
        run_env = dict(env)
        run_env.setdefault("JAVA_HOME", str(java.executable.resolve().parent.parent))
        argv = [
            str(mvn),
            "--batch-mode",
            "--no-transfer-progress",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-Dkafka.version={version}",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        maven_log = root / "maven.log"
        try:
            with maven_log.open("w") as out:
                done = subprocess.run(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=run_env,
                    cwd=root,
                    timeout=_MAVEN_TIMEOUT_S,
                    check=False,
                )
        except subprocess.TimeoutExpired as exc:
            raise JarResolutionFailed(
                f"Maven did not finish within {_MAVEN_TIMEOUT_S}s; see {maven_log}"
            ) from exc
        if done.returncode != 0:
            tail = "\n".join(maven_log.read_text(errors="replace").splitlines()[-25:])
            raise JarResolutionFailed(
                f"Maven could not resolve Kafka {version} (exit {done.returncode}); "
                f"full log: {maven_log}\n{tail}"
            )
        lib = root / "lib"
        shutil.rmtree(lib, ignore_errors=True)
        staging.rename(lib)
        (root / "complete.stamp").write_text(_fingerprint(version) + "\n")
        jar_count = sum(1 for _ in lib.glob("*.jar"))
        log(f"Cached {jar_count} jars in {lib}")
        return Resolution(jars=KafkaJars(version=version, lib_dir=lib), downloaded=True)
