"""Hostile-input-safe XML reading for the literature parsers (PubMed, PMC JATS).

Publisher XML comes from outside the trust boundary, so it is parsed by ``defusedxml`` with entity
declarations and external references refused: a billion-laughs bomb or an ``<!ENTITY x SYSTEM
"file:///etc/passwd">`` fails as ``BadInput("unsafe_xml")`` instead of eating memory or leaking a file.
A DOCTYPE that merely *names* an external DTD (every PubMed and PMC file does) is accepted: expat never
fetches it, so nothing touches the network.

Files may be gzip-compressed (PubMed ships ``.xml.gz``); that is detected from the magic bytes, not the
suffix.  Every failure becomes a ``BadInput`` whose detail holds only a position, never file content.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse, parse

from pipelines.ingest.base import BadInput

GZIP_MAGIC = b"\x1f\x8b"
_SAFETY = {"forbid_dtd": False, "forbid_entities": True, "forbid_external": True}


@contextmanager
def _open_xml(path: Path) -> Iterator[BinaryIO]:
    """The file's bytes, transparently gunzipped; read lazily so a large file is never held whole."""
    with path.open("rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield unzipped
        else:
            yield raw


@contextmanager
def _xml_failures_as_bad_input() -> Iterator[None]:
    """Translate every way an untrusted XML file can fail into a PHI-free ``BadInput``."""
    try:
        yield
    except DefusedXmlException:
        raise BadInput("unsafe_xml", "entity declarations and external references are refused") from None
    except ParseError as exc:
        line, column = exc.position
        raise BadInput("malformed_xml", f"not well-formed at line {line}, column {column}") from None
    except EOFError:
        raise BadInput("truncated_gzip", "compressed stream ended early") from None
    except (gzip.BadGzipFile, zlib.error):
        raise BadInput("corrupt_gzip", "compressed stream is damaged") from None


def iterparse_xml(path: Path, events: tuple[str, ...] = ("start", "end")) -> Iterator[tuple[str, Element]]:
    """Stream ``(event, element)`` pairs; the caller clears what it has consumed to keep memory bounded."""
    with _open_xml(path) as stream, _xml_failures_as_bad_input():
        yield from iterparse(stream, events=events, **_SAFETY)


def parse_xml(path: Path) -> Element:
    """Parse a whole (small, one-record) XML file and return its root element."""
    with _open_xml(path) as stream, _xml_failures_as_bad_input():
        return parse(stream, **_SAFETY).getroot()
