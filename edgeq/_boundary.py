"""Translate errors of our dependencies (OpenVINO, NNCF, torch, safetensors) into edgeq's tree.

Used at the edge of each adapter, so no foreign exception type leaks to callers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from edgeq.errors import EdgeqError, InternalError, InvalidArgument


def _first_line(error: BaseException, limit: int = 400) -> str:
    text = str(error).strip() or type(error).__name__
    # OpenVINO messages carry C++ file paths and long traces; the first meaningful lines suffice.
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("[ ")]
    summary = " ".join(lines[:3]) if lines else text
    return summary[:limit]


@contextmanager
def user_input(what: str) -> Iterator[None]:
    """Errors inside mean the user's file or value is bad: InvalidArgument naming `what`."""
    try:
        yield
    except EdgeqError:
        raise
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - this is the translation boundary
        raise InvalidArgument(f"{what}: {_first_line(error)}") from error


@contextmanager
def dependency(what: str, known: Mapping[type[Exception], type[EdgeqError]] | None = None) -> Iterator[None]:
    """Errors inside are failures of a dependency on valid input: InternalError naming the step,
    unless `known` maps the error's type to one of ours (the dependency said what was wrong)."""
    try:
        yield
    except EdgeqError:
        raise
    except Exception as error:  # noqa: BLE001 - this is the translation boundary
        ours = next((edgeq for foreign, edgeq in (known or {}).items() if isinstance(error, foreign)), None)
        if ours is not None:
            raise ours(f"{what}: {type(error).__name__}: {_first_line(error)}") from error
        raise InternalError(f"{what} failed: {type(error).__name__}: {_first_line(error)}") from error
