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

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse, parse

from pipelines.ingest.base import BadInput
from pipelines.ingest.files import open_binary, read_errors_as_bad_input

_SAFETY = {"forbid_dtd": False, "forbid_entities": True, "forbid_external": True}


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


def iterparse_xml(path: Path, events: tuple[str, ...] = ("start", "end")) -> Iterator[tuple[str, Element]]:
    """Stream ``(event, element)`` pairs; the caller clears what it has consumed to keep memory bounded."""
    with read_errors_as_bad_input(), open_binary(path) as stream, _xml_failures_as_bad_input():
        yield from iterparse(stream, events=events, **_SAFETY)


def parse_xml(path: Path) -> Element:
    """Parse a whole (small, one-record) XML file and return its root element."""
    with read_errors_as_bad_input(), open_binary(path) as stream, _xml_failures_as_bad_input():
        return parse(stream, **_SAFETY).getroot()
