"""Opening input files the same way in every text parser: gzip by content, strict UTF-8, capped, errors as BadInput.

Real feeds arrive compressed or not regardless of their name, cut short by a failed transfer, or in a legacy
encoding.  Parsers must not each rediscover these cases, and the exception text of ``gzip`` or a codec must
not reach a log (a ``UnicodeDecodeError`` quotes the offending bytes), so every such failure is turned here
into a ``BadInput`` with a fixed reason code and a detail written by us.  Every stream counts the bytes it
decompresses against the source's ``Limits``, so a decompression bomb stops at the cap instead of filling memory.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from pipelines.ingest.base import BadInput
from pipelines.ingest.limits import FILE_TOO_LARGE, RECORD_TOO_LARGE, Limits

GZIP_MAGIC = b"\x1f\x8b"
# Bytes read at a time while skipping the rest of an over-long line: skipping never holds more than this.
SKIP_CHUNK = 1 << 20
# utf-8-sig: a byte order mark written by spreadsheet exports is dropped, not kept as text.
ENCODING = "utf-8-sig"


class CappedReader(io.RawIOBase):
    """A binary stream that refuses to deliver more than ``max_file_bytes`` in total, and, when a record cap
    is set, more than ``max_record_bytes`` between two calls of ``new_record`` (the XML readers' records)."""

    def __init__(self, inner: BinaryIO, limits: Limits, record_cap: bool = False) -> None:
        super().__init__()
        self.inner = inner
        self.limits = limits
        self.record_cap = record_cap
        self.total = 0
        self.record = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.inner.readinto(buffer)  # type: ignore[attr-defined]
        self.total += n
        self.record += n
        if self.total > self.limits.max_file_bytes:
            raise BadInput(FILE_TOO_LARGE, f"the file decompresses to more than {self.limits.max_file_bytes} bytes")
        if self.record_cap and self.record > self.limits.max_record_bytes:
            raise BadInput(RECORD_TOO_LARGE, f"a record holds more than {self.limits.max_record_bytes} bytes")
        return n

    def new_record(self) -> None:
        self.record = 0

    def close(self) -> None:
        self.inner.close()
        super().close()


def read_capped(stream: BinaryIO, cap: int) -> bytes:
    """The whole rest of ``stream`` as one record, or ``BadInput(record_too_large)`` past ``cap`` bytes."""
    data = stream.read(cap + 1)
    if len(data) > cap:
        raise BadInput(RECORD_TOO_LARGE, f"the document holds more than {cap} bytes")
    return data


def bounded_lines(text: TextIO, max_chars: int) -> Iterator[tuple[int, str | None]]:
    """(1-based line number, line) for each physical line; ``None`` instead of a line longer than ``max_chars``,
    whose rest is read and discarded a chunk at a time, so that no line is ever held whole."""
    line_no = 0
    while line := text.readline(max_chars + 1):
        line_no += 1
        if len(line) <= max_chars or line.endswith(("\n", "\r")):
            yield line_no, line
            continue
        while (rest := text.readline(SKIP_CHUNK)) and not rest.endswith(("\n", "\r")):
            pass
        yield line_no, None


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_binary(path: Path, limits: Limits, record_cap: bool = False) -> io.BufferedReader:
    """The file's bytes, gunzipped when the content (not the name) says gzip, capped at ``limits`` (with
    ``record_cap``, per record too: see ``CappedReader``); an empty file is BadInput.  The stream's ``raw`` is
    the ``CappedReader``."""
    if path.stat().st_size == 0:
        raise BadInput("empty_file", "the file has no bytes")
    inner: BinaryIO = gzip.open(path, "rb") if _is_gzip(path) else path.open("rb")  # type: ignore[assignment]
    return io.BufferedReader(CappedReader(inner, limits, record_cap))


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


def read_text(path: Path, limits: Limits) -> str:
    """The whole file as text, line endings as written: for formats parsed whole, like a JSON document, which
    is one record (``BadInput(record_too_large)`` past the record cap)."""
    with read_errors_as_bad_input():
        with open_binary(path, limits) as f:
            data = read_capped(f, limits.max_record_bytes)
        text = data.decode(ENCODING)
    if not text.strip():
        raise BadInput("empty_file", "the file holds only whitespace")
    return text


@contextmanager
def open_text(path: Path, limits: Limits) -> Iterator[TextIO]:
    """A streamed text reader; a damaged stream discovered while reading still raises BadInput.

    Newlines are not translated (``newline=""``) so that the csv module sees quoted line breaks as written.
    Every decoding error raised inside the ``with`` block is reported as the file's, so a parser that decodes
    embedded content itself (base64 attachments) catches its own errors.
    """
    with read_errors_as_bad_input():
        with open_binary(path, limits) as binary:
            if not binary.peek(1):
                raise BadInput("empty_file", "the decompressed file has no bytes")
            yield io.TextIOWrapper(binary, encoding=ENCODING, newline="")
