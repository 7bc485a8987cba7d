"""Rules for the IDs that name instances and commands, checked at every entrance.

Two rules, as in Dapr:

- **A new instance ID chosen by a user** (REST start, `schedule_new_workflow`) follows daprd's
  `validateInstanceID` (dapr/dapr `pkg/api/universal`): 1 to 64 UTF-8 bytes of letters, digits,
  `_` and `-`.
- **Any ID the engine accepts** (commands produced straight to Kafka, child instance IDs, command
  IDs) must be non-empty, at most `MAX_ID_BYTES` UTF-8 bytes and printable with no whitespace.
  Child IDs need the looser rule: durabletask names a default child `parent:0001`, and a child of a
  child grows by five characters per level. The rule keeps out what breaks keys, logs and terminals:
  NUL and other control characters, lone surrogates (not encodable as UTF-8), format characters.

`IdError` carries the reason; callers map it to their own error (HTTP 400, `ValueError`, a dead
letter) so the rule itself lives here once.
"""

from __future__ import annotations

import re

from ..errors import HeadraceError

__all__ = ["MAX_ID_BYTES", "MAX_NEW_INSTANCE_ID_BYTES", "IdError", "check_id", "check_new_instance_id"]

#: Longest ID the engine accepts anywhere (a Kafka key; generous for nested child IDs).
MAX_ID_BYTES = 1024
#: IDs made only of these are accepted at once (checked on every input record, so kept cheap).
_COMMON = re.compile(r"[A-Za-z0-9_.:-]{1,256}")

#: daprd's limit for an instance ID given at creation.
MAX_NEW_INSTANCE_ID_BYTES = 64


class IdError(HeadraceError, ValueError):
    """An ID breaks the rules above; `str(error)` says which rule and shows the ID safely."""


def _shown(value: str) -> str:
    # `ascii` escapes NUL, control characters and surrogates, so the message itself is safe to log.
    shown = ascii(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def check_id(value: object, what: str = "instance ID") -> str:
    """Return `value` if the engine accepts it as an ID, else raise `IdError`."""
    if not isinstance(value, str):
        raise IdError(f"{what} must be a string, got {type(value).__name__}")
    if _COMMON.fullmatch(value) is not None:
        return value  # the usual IDs (UUIDs, names, child IDs), without the character-by-character checks
    if not value:
        raise IdError(f"{what} is empty")
    if not value.isprintable() or any(char.isspace() for char in value):
        raise IdError(f"{what} {_shown(value)} contains whitespace, control or unprintable characters")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise IdError(f"{what} {_shown(value)} is not valid Unicode text") from None
    if size > MAX_ID_BYTES:
        raise IdError(f"{what} is {size} bytes long; the limit is {MAX_ID_BYTES}")
    return value


def _allowed(char: str) -> bool:
    # Go's unicode.IsLetter is category L*, IsDigit is Nd: str.isalpha and str.isdecimal.
    return char.isalpha() or char.isdecimal() or char in "_-"


def check_new_instance_id(value: object) -> str:
    """Return `value` if daprd would accept it as the ID of a new instance, else raise `IdError`."""
    check_id(value)
    assert isinstance(value, str)
    if len(value.encode()) > MAX_NEW_INSTANCE_ID_BYTES:
        raise IdError(f"instance ID {_shown(value)} is longer than {MAX_NEW_INSTANCE_ID_BYTES} bytes")
    if not all(_allowed(char) for char in value):
        raise IdError(f"instance ID {_shown(value)} may contain only letters, digits, '_' and '-'")
    return value
