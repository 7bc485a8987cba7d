"""`python -m ops` is the same as the `headrace` console script."""

from __future__ import annotations

import sys

from ops.cli import main

sys.exit(main())
