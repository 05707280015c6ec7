"""HL7 v2 result and document messages: ORU^R01 and MDM^T02, one document per message.

A file holds one or more messages, each starting at its MSH segment; segments end with a carriage return
(or a newline, as files edited by hand do), and the MLLP framing bytes (0x0B before a message, 0x1C after)
that interface engines leave in captured feeds are ignored.  The file is streamed message by message.

* ORU^R01 (results): the OBX values become lines: narrative types (TX, FT) as written, numeric ones
  (NM, SN) as "name: value units (ref range) flag", coded and short ones as "name: value"; NTE comments
  follow their result.  doc_type ``lab_report`` when the message carries a numeric result, else
  ``observation_report`` (a narrative radiology or pathology report).
* MDM^T02 (document notification and content): the OBX text of the transcribed document, under the TXA
  document type, activity date and author.  doc_type ``clinical_note``.

patient_key is the first identifier of PID-3 (its CX.1); PID-5 name, PID-7 birth date, PID-8 sex, PID-11
address and PID-13 phone make a header at the top of the text, as in any printed report (this is the raw
zone; de-identification removes them later).  The natural key is the message control id (MSH-10), so a
resent message replaces the earlier copy.  Escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ \\Xhh\\)
are decoded after the message is split, as the standard requires.

Other message types, a message without PID or with an unreadable MSH, and a message longer than the source's
record cap (``record_too_large``, ``pipelines/ingest/limits.yaml``) are rejected one by one; a file
without any MSH segment is not HL7 and is rejected whole.  Positions are 1-based ("message 2").

The message itself (segments joined by CR, MLLP framing removed) is kept in ``metadata.extra["hl7_message"]``
(raw zone only).  The deid stage de-identifies it field by field and renders the text again from it with
``message_document`` (``medcurate.formats.hl7v2``), the function that renders it here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medcurate.formats.hl7v2 import MessageRejected, message_document
from pipelines.ingest.base import BadInput, ParsedItem, Parser, RejectedRecord
from pipelines.ingest.files import bounded_lines, open_text
from pipelines.ingest.limits import RECORD_TOO_LARGE

MLLP_FRAMING = "\x0b\x1c"
# Batch envelope segments may precede or follow messages without belonging to one.
BATCH_SEGMENTS = {"FHS", "BHS", "BTS", "FTS"}


@dataclass
class _Message:
    number: int
    segments: list[str]
    chars: int
    too_large: bool = False


def _split_messages(lines: Iterator[tuple[int, str | None]], max_chars: int) -> Iterator[_Message | int]:
    """Messages in file order; a line number is yielded for segments found outside any message.

    A message longer than ``max_chars`` (or holding a line longer than that, given as ``None``) keeps only its
    MSH and is marked ``too_large``: its other segments are not held.
    """
    current: _Message | None = None
    count = 0
    for line_no, raw in lines:
        if raw is None:
            if current is None:
                yield line_no
            else:
                current.too_large = True
            continue
        segment = raw.strip("\r\n" + MLLP_FRAMING)
        if not segment.strip():
            continue
        if segment.startswith("MSH"):
            if current is not None:
                yield current
            count += 1
            current = _Message(count, [segment], len(segment))
        elif current is not None:
            current.chars += len(segment)
            current.too_large = current.too_large or current.chars > max_chars
            if not current.too_large:
                current.segments.append(segment)
        elif segment[:3] not in BATCH_SEGMENTS:
            yield line_no
    if current is not None:
        yield current


class Hl7v2Parser(Parser):
    kind = "hl7v2"

    def parse_file(self, path: Path) -> Iterator[ParsedItem]:
        messages = 0
        orphans_reported = False
        with open_text(path, self.limits) as f:
            for item in _split_messages(bounded_lines(f, self.limits.max_record_bytes), self.limits.max_record_bytes):
                if isinstance(item, int):
                    if not orphans_reported:  # one record for the block: its lines are not separate records
                        yield RejectedRecord(f"line {item}", item - 1, "segments_outside_message", "before any MSH")
                        orphans_reported = True
                    continue
                messages += 1
                if item.too_large:
                    yield RejectedRecord(
                        f"message {item.number}", item.number - 1, RECORD_TOO_LARGE, "message longer than the cap"
                    )
                else:
                    yield message_item(item.number, item.segments)
        if not messages:
            raise BadInput("no_msh_segment", "no HL7 v2 message header (MSH) in the file")


def message_item(number: int, segments: list[str]) -> ParsedItem:
    """The document of one message (its segments without terminators), or the record of why it is rejected."""
    try:
        return message_document(number, segments)
    except MessageRejected as exc:
        return RejectedRecord(f"message {number}", number - 1, exc.reason, exc.detail)
