"""The native build of a checkout: its hot modules compiled with mypyc, for tests and the bench.

`setup.py` compiles the modules that `pyproject.toml` lists under `[tool.headrace] native-modules`
when `HEADRACE_NATIVE=1` (the container image does). A developer's virtualenv stays pure Python: an
editable install would put the compiled modules beside the sources, where they would shadow every
later edit. So this module builds a compiled *copy* of the checkout instead:

- `python -m ops.native build [--out DIR]` copies the checkout, compiles the copy and prints its
  directory; with that directory first on `PYTHONPATH`, `engine` resolves there, compiled where a
  module was listed.
- `python -m ops.native test [pytest args]` builds a copy and runs the unit suite (or the given
  arguments) on it. `ops/dev test` runs it, so what the image ships is what CI tested.
- `headrace bench --native` runs the engine, workers and API processes from such a copy.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from engine import build as build_of
from ops.errors import OpsError

__all__ = ["NATIVE_ENV", "ROOT", "NativeBuildError", "build", "compiled", "listed_modules", "main"]

ROOT = Path(__file__).resolve().parents[1]
#: What `test` sets for the suite it runs: the suite then fails unless every listed module loaded
#: compiled (tests/conftest.py), so a build that quietly fell back to Python cannot pass as native.
NATIVE_ENV = "HEADRACE_NATIVE_EXPECTED"
#: What a copy leaves out: environments, caches, build output and version control.
_SKIPPED = (".git", ".venv", "venv", "build", "dist", "bench-results", "node_modules", "target", "__pycache__",
            "*.egg-info", ".*_cache", ".hypothesis", "*.so", "*.pyd")


class NativeBuildError(OpsError):
    """The compiled copy could not be built (no C compiler, no mypy, a module mypyc refuses)."""


def listed_modules(root: Path = ROOT) -> list[str]:
    """The dotted names of the modules the native build compiles."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    paths: list[str] = config["tool"]["headrace"]["native-modules"]
    return [path.removesuffix(".py").replace("/", ".") for path in paths]


def compiled(modules: list[str] | None = None) -> dict[str, bool]:
    """Whether each listed module (imported here) was loaded from a compiled extension."""
    names = listed_modules() if modules is None else modules
    return {name: build_of.compiled(importlib.import_module(name)) for name in names}


def build(out: Path, root: Path = ROOT) -> Path:
    """Copy the checkout at `root` to `out` (which must not exist) and compile the copy; returns
    `out`. The build's output goes to `out/native-build.log`."""
    if out.exists():
        raise NativeBuildError(f"{out} exists already: the copy goes to a new directory")
    # The whole checkout, so tests that read its other files (compose, schemas, docs) find them.
    shutil.copytree(root, out, ignore=shutil.ignore_patterns(*_SKIPPED), symlinks=True)
    log = out / "native-build.log"
    with log.open("wb") as sink:
        done = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace"],
            cwd=out, env={**os.environ, "HEADRACE_NATIVE": "1"}, stdout=sink, stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise NativeBuildError(f"the native build failed (exit {done.returncode}; {log}):\n{tail}")
    shutil.rmtree(out / "build", ignore_errors=True)
    return out


def _test(args: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="headrace-native-") as tmp:
        copy = build(Path(tmp) / "src")
        env = {**os.environ, NATIVE_ENV: "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(copy), os.environ.get("PYTHONPATH")]))}
        pytest_args = args or ["tests/unit", "-q", "-p", "no:cacheprovider"]
        return subprocess.run([sys.executable, "-m", "pytest", *pytest_args], cwd=copy, env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.native", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="build a compiled copy of this checkout and print its directory")
    build_cmd.add_argument("--out", type=Path, help="directory to create (default: a new temporary one)")
    sub.add_parser("test", help="build a compiled copy and run pytest on it (default: the unit suite)",
                   add_help=False)
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "test":
            return _test(rest)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        out = args.out or Path(tempfile.mkdtemp(prefix="headrace-native-")) / "src"
        print(build(out))
    except NativeBuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
