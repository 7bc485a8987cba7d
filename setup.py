"""Everything about the package is in pyproject.toml; this adds the optional native build.

With HEADRACE_NATIVE=1 the modules listed under `[tool.headrace] native-modules` are compiled with
mypyc (https://mypyc.readthedocs.io/), which turns type-annotated Python into C extensions: the
engine's turn costs about a fifth less CPU (docs/performance.md, "The compiled build"). Without
it, or where no C compiler is at hand, the package is the same pure Python. Building it needs mypy
(which ships mypyc) in the build environment: `pip install mypy` and `HEADRACE_NATIVE=1 pip install
--no-build-isolation .`, or `python -m ops.native` for a compiled copy of a checkout.
"""

import os
import tomllib
from pathlib import Path

from setuptools import setup

ext_modules = []
if os.environ.get("HEADRACE_NATIVE") == "1":
    from mypyc.build import mypycify

    config = tomllib.loads((Path(__file__).parent / "pyproject.toml").read_text())
    ext_modules = mypycify(config["tool"]["headrace"]["native-modules"], opt_level="3")

setup(ext_modules=ext_modules)
