"""Identifier validation: the one gate between user input and keys, paths and queries."""

from __future__ import annotations

import re

from tasks.errors import InvalidId

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def check_id(value: object, what: str = "id") -> str:
    """Return ``value`` if it is a valid business_id or call_sid.

    Raises:
        InvalidId: otherwise.
    """
    if not is_valid_id(value):
        raise InvalidId(f"{what} must match {ID_PATTERN.pattern}")
    assert isinstance(value, str)
    return value
