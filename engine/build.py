"""Which build of Headrace is running: the pure-Python package or the native build, whose turn
modules mypyc compiled to C extensions (setup.py, `HEADRACE_NATIVE=1`; the container image's)."""

from __future__ import annotations

import importlib.machinery
from types import ModuleType

__all__ = ["compiled", "native"]


def compiled(module: ModuleType) -> bool:
    """Whether `module` was loaded from a compiled extension rather than from Python source."""
    return str(getattr(module, "__file__", "")).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def native() -> bool:
    """Whether the engine's turn runs compiled (its orchestrator is the first module the native
    build lists)."""
    from .core import orchestrator

    return compiled(orchestrator)
