"""Dapr's Python SDK in a venv of its own: the connected app of `headrace bench --via grpc`, and of
tests/grpc (Dapr apps on `headrace grpc`).

Made once under the jar cache's root (`ops.kafka.paths.cache_root`, `~/.cache/headrace`) and
reused. Never the environment Headrace runs in: the SDK's `dapr.ext.workflow` belongs to the app's
process only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from ops.errors import OpsError
from ops.kafka.locking import file_lock
from ops.kafka.paths import cache_root

__all__ = ["SDK_PACKAGES", "pypi_reachable", "sdk_installed", "sdk_python", "sdk_root"]

#: Dapr's Python SDK as an app installs it: the workflow extension and the core of the same release
#: (1.18.3 vendors durabletask's stubs from the proto commit api/grpc/protos is generated from).
SDK_PACKAGES = ("dapr==1.18.3", "dapr-ext-workflow==1.18.3")


def sdk_root(env: Mapping[str, str] = os.environ) -> Path:
    return cache_root(env) / f"dapr-sdk-{SDK_PACKAGES[1].split('==')[1]}"


def sdk_installed(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the venv holds the SDK already (using it then needs no network)."""
    done = sdk_root(env) / ".installed"
    return done.exists() and done.read_text() == " ".join(SDK_PACKAGES)


def pypi_reachable(timeout_s: float = 5.0) -> bool:
    """Whether pypi.org answers (installing the SDK needs it; using an installed one does not)."""
    try:
        with socket.create_connection(("pypi.org", 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def sdk_python(env: Mapping[str, str] = os.environ, log: Callable[[str], None] = lambda _m: None) -> Path:
    """The venv's interpreter, installing the SDK from PyPI on first use."""
    root = sdk_root(env)
    python = root / "bin" / "python"
    with file_lock(root.parent / "dapr-sdk.lock"):  # two runs at once install it once
        if sdk_installed(env):
            return python
        log(f"installing Dapr's Python SDK ({', '.join(SDK_PACKAGES)}) into {root} (first run only)")
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True, timeout=120)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            *SDK_PACKAGES], check=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            raise OpsError(f"could not install Dapr's Python SDK into {root}: {exc}") from exc
        (root / ".installed").write_text(" ".join(SDK_PACKAGES))
    return python
