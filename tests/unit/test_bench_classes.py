"""`python -m ops.bench.classes`: the probe is really compiled, and every case gives a figure."""

from __future__ import annotations

from pathlib import Path

from engine import build
from ops.bench.classes import compile_probe, measure


def test_the_probe_is_compiled_and_every_case_is_timed(tmp_path: Path) -> None:
    probe = compile_probe(tmp_path)
    assert build.compiled(probe), probe.__file__
    figures = measure(probe, repeat=1, calls=1)
    assert len(figures) == 8
    assert len({f.what for f in figures}) == 8
    assert all(f.ns_per_object > 0 for f in figures)
    # What the figures compare: the probe's classes are native ones (mypyc's own attribute table).
    assert "__mypyc_attrs__" in vars(probe.Native)
    assert "__mypyc_attrs__" in vars(probe.NativeOwnInit)

