"""Regular expressions an admin types and agent-sent text is searched with.

Python's ``re`` backtracks: a pattern as plain as ``\\d+x`` takes seconds on 32 KiB of
digits, and ``(a|aa)+$`` takes hours on 60 characters, so an agent that knows (or
guesses) an admin's pattern could stall the worker that checks its request. RE2
runs in time linear in the text, whatever the pattern; it has no look-around and
no back-references, and ``\\d``, ``\\w``, ``\\s`` are ASCII-only.
"""

import functools

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported to the admin, not logged to stderr


class UnsupportedPattern(ValueError):
    """Not a regular expression RE2 can run; the message says why."""


@functools.lru_cache(maxsize=1024)
def compile_linear(pattern: str):
    """The pattern compiled for linear-time matching (``.search(text)`` as with ``re``); raises UnsupportedPattern."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise UnsupportedPattern(
            f"{why} (patterns run in linear time: look-around and back-references are not supported)") from None
