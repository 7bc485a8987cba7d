"""The rolling deploy's two versions (`ops.chaos.rolling`): the app each one's processes run and the
load kinds each adds. Apart from that module so that the scenario list (`ops.chaos.scenarios`,
read by `headrace --help`) names them without importing the engine and its clients."""

from __future__ import annotations

__all__ = ["APP_V1", "APP_V2", "MIX_V1", "MIX_V2"]

APP_V1 = "ops.chaos.rolling:v1"
APP_V2 = "ops.chaos.rolling:v2"
#: Load kinds (ops/chaos/load.py KINDS) and their weight in the mix, before and once v2 is up.
MIX_V1 = {"patched": 20, "named": 20}
MIX_V2 = {"new": 15}
