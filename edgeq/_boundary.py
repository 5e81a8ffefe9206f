"""Translate errors of our dependencies (OpenVINO, NNCF, torch, safetensors) into edgeq's tree.

Used at the edge of each adapter, so no foreign exception type leaks to callers. `dependency` also
keeps the libraries' noise that says nothing to an edgeq user (torch.jit's tracer warnings, "No
CUDA runtime is found", NNCF's "smaller than the requested subset size") out of the output: it is
logged at debug level under `edgeq.libraries`, only while edgeq calls the library.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from edgeq.errors import EdgeqError, InternalError, InvalidArgument


def _first_line(error: BaseException, limit: int = 400) -> str:
    text = str(error).strip() or type(error).__name__
    # OpenVINO messages carry C++ file paths and long traces; the first meaningful lines suffice.
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("[ ")]
    summary = " ".join(lines[:3]) if lines else text
    return summary[:limit]


NOISY_LOGGERS = {  # logger -> message fragments demoted to debug
    "torch.utils.cpp_extension": ("No CUDA runtime is found",),
    "nncf": ("smaller than the requested subset size",),
}
NOISY_WARNINGS = ("TracerWarning",)  # warning classes by name (torch.jit's), plus torch's FutureWarnings
log = logging.getLogger("edgeq.libraries")


class _ToDebug(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(fragment in message for fragment in self.fragments):
            log.debug("%s: %s", record.name, message)
            return False
        return True


def _noise(message: Warning | str, category: type[Warning], filename: str) -> bool:
    return category.__name__ in NOISY_WARNINGS or (
        issubclass(category, FutureWarning) and ("torch" in filename or "torch" in str(message)))


@contextmanager
def quiet_library() -> Iterator[None]:
    """The known noise of a library call at debug level; other warnings and log lines pass."""
    filters = [(logging.getLogger(name), _ToDebug(fragments)) for name, fragments in NOISY_LOGGERS.items()]
    for logger, noise in filters:
        logger.addFilter(noise)
    try:
        with warnings.catch_warnings():  # restores showwarning on exit
            shown = warnings.showwarning

            def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                     file: object = None, line: str | None = None) -> None:
                if _noise(message, category, filename):
                    log.debug("%s:%d: %s: %s", filename, lineno, category.__name__, message)
                else:
                    shown(message, category, filename, lineno, file, line)  # type: ignore[arg-type]

            warnings.showwarning = show
            yield
    finally:
        for logger, noise in filters:
            logger.removeFilter(noise)


@contextmanager
def user_input(what: str) -> Iterator[None]:
    """Errors inside mean the user's file or value is bad: InvalidArgument naming `what`."""
    try:
        yield
    except (EdgeqError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - this is the translation boundary
        raise InvalidArgument(f"{what}: {_first_line(error)}") from error


@contextmanager
def dependency(what: str, known: Mapping[type[Exception], type[EdgeqError]] | None = None) -> Iterator[None]:
    """Errors inside are failures of a dependency on valid input: InternalError naming the step,
    unless `known` maps the error's type to one of ours (the dependency said what was wrong).
    The library's known noise is kept out of the output meanwhile (`quiet_library`)."""
    try:
        with quiet_library():
            yield
    except EdgeqError:
        raise
    except Exception as error:  # noqa: BLE001 - this is the translation boundary
        ours = next((edgeq for foreign, edgeq in (known or {}).items() if isinstance(error, foreign)), None)
        if ours is not None:
            raise ours(f"{what}: {type(error).__name__}: {_first_line(error)}") from error
        raise InternalError(f"{what} failed: {type(error).__name__}: {_first_line(error)}") from error
