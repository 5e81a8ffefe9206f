"""Validation of user-chosen names that end up in file paths (model names, versions)."""

from __future__ import annotations

import re

from edgeq.errors import InvalidArgument

MAX_NAME_LENGTH = 64
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_model_name(name: str) -> str:
    """Return `name` if it is safe as one path component, else raise InvalidArgument."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("model name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"model name is {len(name)} characters; the limit is {MAX_NAME_LENGTH}")
    if name in (".", "..") or ".." in name or not _NAME.match(name):
        raise InvalidArgument(
            f"model name {name!r} is not allowed: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, and no '..'"
        )
    return name


def check_version(version: int | str) -> int:
    """Versions are positive integers (the OpenVINO Model Server layout)."""
    try:
        number = int(str(version), 10)
    except ValueError:
        raise InvalidArgument(f"version {version!r} is not a positive integer") from None
    if number < 1 or number > 2**31 - 1:
        raise InvalidArgument(f"version {version!r} is out of range (1 .. 2^31-1)")
    return number
