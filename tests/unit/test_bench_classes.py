"""`python -m ops.bench.classes`: the probe is really compiled, and every case gives a figure."""

from __future__ import annotations

from pathlib import Path

from engine import build
from ops.bench.classes import load_probe, measure


def test_the_probe_is_compiled_and_every_case_is_timed(tmp_path: Path) -> None:
    probe = load_probe(tmp_path)
    assert build.compiled(probe.compiled), probe.compiled.__file__
    assert not build.compiled(probe.interpreted), probe.interpreted.__file__
    figures = measure(probe, repeat=1, calls=1)
    assert len(figures) == 8
    assert len({f.what for f in figures}) == 8
    assert all(f.ns_per_object > 0 for f in figures)
    # What the figures compare: the compiled probe's classes are native ones (mypyc's attribute
    # table), the interpreted load's are not, and its `Quick` has `quick_init`'s constructor.
    assert "__mypyc_attrs__" in vars(probe.compiled.Native)
    assert "__mypyc_attrs__" in vars(probe.compiled.NativeOwnInit)
    assert "__mypyc_attrs__" not in vars(probe.interpreted.Native)
    assert "__quick_set0" in probe.interpreted.Quick.__init__.__code__.co_freevars
