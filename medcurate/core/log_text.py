"""What a log line may say about names and failures, so that no input can forge or fill a log line.

A file or source name can hold a newline (``x\\n2026-01-01 WARNING forged``), escape codes or a Unicode line
separator: logged raw, it writes a fake line into the run log.  Exception messages quote their input (a
path, a cell), so a failure is logged by its type and frames only.
"""

from __future__ import annotations

import os
import traceback


def quote_name(name: str | os.PathLike[str]) -> str:
    """``name`` double-quoted, with backslashes, quotes and every non-printable character escaped (``\\n``,
    ``\\x1b``, ``\\u2028``, ``\\udcff`` for undecodable bytes): one log line, whatever the name holds."""
    escaped = []
    for char in os.fsdecode(name):
        if char in '\\"':
            escaped.append("\\" + char)
        elif char.isprintable():
            escaped.append(char)
        else:
            escaped.append(ascii(char)[1:-1])
    return '"' + "".join(escaped) + '"'


def describe_exception(exc: BaseException) -> str:
    """The exception's type and the frames where it was raised, without its message (which may quote input)."""
    return type(exc).__name__ + "\n" + "".join(traceback.format_tb(exc.__traceback__))
