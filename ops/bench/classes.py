"""What a value class costs the compiled turn: attribute reads and constructions, native or not.

The native build (`python -m ops.native`) compiles the turn's modules with mypyc but leaves the
events, commands, actions and `InstanceState` interpreted, because the codec and
`core.frozen.evolved` take them apart field by field. This measures what that choice costs: a
probe module (a frozen, slotted, keyword-only dataclass of five fields, as the events are) is
compiled in a temporary directory, and the same reads and constructions are timed from compiled
and from interpreted code, on the compiled (native) class and on an interpreted one (issue 17).

    python -m ops.bench.classes

Needs what the native build needs: mypy (which ships mypyc) and a C compiler.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from engine.core.frozen import quick_init

__all__ = ["Figure", "Probe", "load_probe", "main", "measure"]

#: Objects per timed call: the per-object figure is the call's time divided by this.
OBJECTS = 1000

#: The probe, compiled by mypyc and also imported as Python. Compiled, `Native` becomes a native
#: class (its `__init__` is the one `dataclasses` writes at import, interpreted) and
#: `NativeOwnInit` spells out its `__init__`, which mypyc compiles. Compiled `read_any` takes any
#: object, so it reads an interpreted one through the generic attribute lookup, as the compiled
#: turn reads the events; the interpreted load's `Native` and `Quick` are the interpreted classes.
PROBE = '''
from __future__ import annotations
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Native:
    timestamp: float
    seq: int
    task_id: int
    name: str
    payload: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class NativeOwnInit:
    timestamp: float
    seq: int
    task_id: int
    name: str
    payload: str | None = None

    def __init__(self, *, timestamp: float, seq: int, task_id: int, name: str, payload: str | None = None) -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "task_id", task_id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "payload", payload)


def read_native(values: list[Native]) -> int:
    total = 0
    for v in values:
        total += v.seq + v.task_id + len(v.name) + (v.payload is None)
    return total


def read_any(values: list[Any]) -> int:
    total = 0
    for v in values:
        total += v.seq + v.task_id + len(v.name) + (v.payload is None)
    return total


def make_own_init(n: int) -> list[NativeOwnInit]:
    return [NativeOwnInit(timestamp=1.0, seq=i, task_id=i, name="act") for i in range(n)]


def make(cls: Any, n: int) -> list[Any]:
    return [cls(timestamp=1.0, seq=i, task_id=i, name="act") for i in range(n)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Quick:
    """`Native` again: the interpreted load gives it `quick_init`'s `__init__`."""

    timestamp: float
    seq: int
    task_id: int
    name: str
    payload: str | None = None
'''


@dataclasses.dataclass(frozen=True)
class Figure:
    what: str
    ns_per_object: float


@dataclasses.dataclass(frozen=True)
class Probe:
    """The probe's source, compiled and as Python: the same classes and functions both ways."""

    compiled: ModuleType
    interpreted: ModuleType


def load_probe(directory: Path) -> Probe:
    """The probe written to `directory`, compiled there by mypyc and imported, and imported from
    its source as well (under another name, with `quick_init` on its `Quick`)."""
    source = directory / "headrace_class_probe.py"
    source.write_text(PROBE)
    done = subprocess.run([sys.executable, "-m", "mypyc", source.name], cwd=directory, capture_output=True,
                          text=True, check=False)
    built = sorted(directory.glob("headrace_class_probe.*.so")) + sorted(directory.glob("headrace_class_probe.*.pyd"))
    if done.returncode != 0 or not built:
        raise SystemExit(f"mypyc could not compile the probe (exit {done.returncode}):\n{done.stdout[-2000:]}"
                         f"{done.stderr[-2000:]}")
    interpreted = _load("headrace_class_probe_py", source)
    quick_init(interpreted.Quick)
    return Probe(_load("headrace_class_probe", built[0]), interpreted)


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the probe {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs, as an import does: `dataclasses` reads the module of the classes
    # it makes, and `quick_init` makes the new `__init__` in it.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def measure(probe: Probe, repeat: int = 5, calls: int = 200) -> list[Figure]:
    compiled, interpreted = probe.compiled, probe.interpreted
    natives = compiled.make(compiled.Native, OBJECTS)
    plains = interpreted.make(interpreted.Native, OBJECTS)
    cases: Sequence[tuple[str, Callable[[], Any]]] = (
        ("4 reads: compiled code, native class", lambda: compiled.read_native(natives)),
        ("4 reads: compiled code, interpreted class", lambda: compiled.read_any(plains)),
        ("4 reads: interpreted code, interpreted class", lambda: interpreted.read_any(plains)),
        ("4 reads: interpreted code, native class", lambda: interpreted.read_any(natives)),
        ("construction from compiled code: native, own __init__", lambda: compiled.make_own_init(OBJECTS)),
        ("construction from compiled code: native, dataclass __init__",
         lambda: compiled.make(compiled.Native, OBJECTS)),
        ("construction from compiled code: interpreted, quick_init", lambda: compiled.make(interpreted.Quick, OBJECTS)),
        ("construction from compiled code: interpreted, dataclass __init__",
         lambda: compiled.make(interpreted.Native, OBJECTS)),
    )
    return [Figure(what, min(timeit.repeat(call, number=calls, repeat=repeat)) / calls / OBJECTS * 1e9)
            for what, call in cases]


def main(argv: list[str] | None = None, out: Callable[[str], Any] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.classes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help=f"timed calls of {OBJECTS:,} objects each (200)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="headrace-classes-") as tmp:
        figures = measure(load_probe(Path(tmp)), calls=args.calls)
    width = max(len(f.what) for f in figures)
    for figure in figures:
        out(f"{figure.what:<{width}}  {figure.ns_per_object:8.1f} ns per object")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
