"""`python -m api`: the REST API with settings from the environment (see api/settings.py)."""

from __future__ import annotations

import sys

from api.server import main

sys.exit(main())
