"""Hostile-input-safe XML reading for the literature parsers (PubMed, PMC JATS).

Publisher XML comes from outside the trust boundary, so it is parsed by ``defusedxml`` with entity
declarations and external references refused: a billion-laughs bomb or an ``<!ENTITY x SYSTEM
"file:///etc/passwd">`` fails as ``BadInput("unsafe_xml")`` instead of eating memory or leaking a file.
A DOCTYPE that merely *names* an external DTD (every PubMed and PMC file does) is accepted: expat never
fetches it, so nothing touches the network.

Files may be gzip-compressed (PubMed ships ``.xml.gz``); that is detected from the magic bytes, not the
suffix.  The source's ``Limits`` cap the bytes of the file and of each record (a valid prefix followed by
gigabytes inside one element stops at the record cap, ``record_too_large``) and the element nesting
(``too_deep``).  Every failure becomes a ``BadInput`` whose detail holds only a position, never file content.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from pipelines.ingest.base import BadInput
from pipelines.ingest.files import open_binary, read_errors_as_bad_input
from pipelines.ingest.limits import TOO_DEEP, Limits

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


def iterparse_xml(
    path: Path, limits: Limits, events: tuple[str, ...] = ("start", "end"), record_tags: Collection[str] = ()
) -> Iterator[tuple[str, Element]]:
    """Stream ``(event, element)`` pairs; the caller clears what it has consumed to keep memory bounded.

    The record cap counts the bytes read since the end of the last element named in ``record_tags`` (the
    whole file when none is named): no record, and nothing between records, may exceed it.
    """
    with read_errors_as_bad_input(), open_binary(path, limits, record_cap=True) as stream:
        with _xml_failures_as_bad_input():
            depth = 0
            for event, elem in iterparse(stream, events=("start", "end"), **_SAFETY):
                depth += 1 if event == "start" else -1
                if depth > limits.max_depth:
                    raise BadInput(TOO_DEEP, f"elements nested deeper than {limits.max_depth} levels")
                if event in events:
                    yield event, elem
                if event == "end" and elem.tag in record_tags:
                    stream.raw.new_record()


def parse_xml(path: Path, limits: Limits) -> Element:
    """Parse a whole (one-record) XML file and return its root element."""
    root = None
    for _, elem in iterparse_xml(path, limits, events=("start",)):
        root = elem if root is None else root
    if root is None:
        raise BadInput("malformed_xml", "no element in the file")
    return root
