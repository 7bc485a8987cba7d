"""The one error root of the ops package.

The CLI turns every OpsError into a one-paragraph message and a non-zero exit, never a traceback,
so subclasses must carry a message a person can act on.
"""

from __future__ import annotations


class OpsError(Exception):
    """An operational failure with a human-readable explanation."""

    exit_code: int = 2
