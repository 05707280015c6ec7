"""Opening input files the same way in every text parser: gzip by content, strict UTF-8, errors as BadInput.

Real feeds arrive compressed or not regardless of their name, cut short by a failed transfer, or in a legacy
encoding.  Parsers must not each rediscover these cases, and the exception text of ``gzip`` or a codec must
not reach a log (a ``UnicodeDecodeError`` quotes the offending bytes), so every such failure is turned here
into a ``BadInput`` with a fixed reason code and a detail written by us.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

from pipelines.ingest.base import BadInput

GZIP_MAGIC = b"\x1f\x8b"
# utf-8-sig: a byte order mark written by spreadsheet exports is dropped, not kept as text.
ENCODING = "utf-8-sig"


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_binary(path: Path) -> BinaryIO:
    """The file's bytes, gunzipped when the content (not the name) says gzip; an empty file is BadInput."""
    if path.stat().st_size == 0:
        raise BadInput("empty_file", "the file has no bytes")
    if _is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


@contextmanager
def read_errors_as_bad_input() -> Iterator[None]:
    """Turn decompression and decoding errors into BadInput, whatever code is reading."""
    try:
        yield
    except EOFError:
        raise BadInput("truncated_gzip", "the compressed stream ends before its end marker") from None
    except (gzip.BadGzipFile, zlib.error):
        raise BadInput("corrupt_gzip", "the compressed stream is damaged") from None
    except UnicodeDecodeError as exc:
        raise BadInput("not_utf8", f"invalid UTF-8 byte sequence at decoded offset ~{exc.start}") from None


def read_text(path: Path) -> str:
    """The whole file as text, line endings as written: for formats parsed whole, like a JSON document."""
    with read_errors_as_bad_input():
        with open_binary(path) as f:
            data = f.read()
        text = data.decode(ENCODING)
    if not text.strip():
        raise BadInput("empty_file", "the file holds only whitespace")
    return text


@contextmanager
def open_text(path: Path) -> Iterator[TextIO]:
    """A streamed text reader; a damaged stream discovered while reading still raises BadInput.

    Newlines are not translated (``newline=""``) so that the csv module sees quoted line breaks as written.
    Every decoding error raised inside the ``with`` block is reported as the file's, so a parser that decodes
    embedded content itself (base64 attachments) catches its own errors.
    """
    with read_errors_as_bad_input():
        with open_binary(path) as binary:
            if not binary.peek(1):  # type: ignore[attr-defined]
                raise BadInput("empty_file", "the decompressed file has no bytes")
            yield io.TextIOWrapper(binary, encoding=ENCODING, newline="")
