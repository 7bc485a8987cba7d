"""Building blocks of `headrace`'s subcommands, shared by every module that registers one.

Leaf module (standard library only): `ops.cli` imports the registering modules, and they import
this, never `ops.cli`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Subcommands", "group_options"]


class Subcommands(Protocol):
    """What `ArgumentParser.add_subparsers()` returns, as far as a `register` function uses it."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def group_options(
    parser: argparse.ArgumentParser, add: Callable[[argparse.ArgumentParser, Callable[[Any], Any]], None]
) -> argparse.ArgumentParser:
    """Options of a command with verbs, accepted before and after the verb.

    `add(target, default)` adds the options to `target`, passing each default value through
    `default`. They are added to `parser` with their real defaults; the returned parser carries them
    with `argparse.SUPPRESS` defaults and is meant as `parents=[...]` of every verb's parser, so a
    value typed after the verb wins and one typed before it is not overwritten by a default
    (https://docs.python.org/3/library/argparse.html#parents).
    """
    add(parser, lambda value: value)
    shared = argparse.ArgumentParser(add_help=False)
    add(shared, lambda _value: argparse.SUPPRESS)
    return shared
