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
``message_item``, the function that rendered it here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from medcurate.schema import Document
from pipelines.ingest.base import BadInput, ParsedItem, Parser, RejectedRecord
from pipelines.ingest.files import bounded_lines, open_text
from pipelines.ingest.limits import RECORD_TOO_LARGE

SUPPORTED_TYPES = {("ORU", "R01"), ("MDM", "T02")}
# metadata.extra key of the structured payload (raw zone only, until the deid stage de-identifies it).
HL7_MESSAGE_KEY = "hl7_message"
SEGMENT_END = "\r"
MLLP_FRAMING = "\x0b\x1c"
# Batch envelope segments may precede or follow messages without belonging to one.
BATCH_SEGMENTS = {"FHS", "BHS", "BTS", "FTS"}
NARRATIVE_TYPES = {"TX", "FT"}
NUMERIC_TYPES = {"NM", "SN"}
CODED_TYPES = {"CE", "CWE", "CNE"}
SHORT_TYPES = {"ST", "ID", "IS", "DT", "TS", "DTM", "TM", "TN"}
_SAFE_CODE = re.compile(r"[A-Za-z0-9_.]{1,8}")
_TS = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$")


@dataclass(frozen=True)
class Delimiters:
    field: str
    component: str
    repetition: str
    escape: str
    subcomponent: str

    @classmethod
    def from_msh(cls, segment: str) -> Delimiters | None:
        """The delimiters a message declares in MSH-1 and MSH-2; None when they are unusable."""
        if not segment.startswith("MSH") or len(segment) < 8:
            return None
        field = segment[3]
        encoding = segment[4:].split(field, 1)[0]
        chars = field + encoding[:4]
        if len(encoding) not in (4, 5) or len(set(chars)) != 5 or any(c.isalnum() or c.isspace() for c in chars):
            return None
        return cls(field, encoding[0], encoding[1], encoding[2], encoding[3])

    def unescape(self, value: str) -> str:
        """Decode HL7 escape sequences; an unknown sequence is kept as written rather than lost."""
        e = re.escape(self.escape)
        return re.sub(f"{e}([^{e}]*){e}", lambda m: self._escape_sequence(m.group(1), m.group(0)), value)

    def _escape_sequence(self, code: str, original: str) -> str:
        simple = {"F": self.field, "S": self.component, "T": self.subcomponent, "R": self.repetition}
        if code in simple:
            return simple[code]
        if code == "E":
            return self.escape
        if code in (".br", ".sp") or code.startswith(".sp "):
            return "\n"
        if code in ("H", "N") or code.startswith((".in", ".ti", ".ce", ".fi", ".nf", ".sk", "C", "M", "Z")):
            return ""  # highlighting, layout and character-set switches: presentation only
        if code.startswith("X") and re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", code[1:]):
            raw = bytes.fromhex(code[1:])
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")
        return original


class Segment:
    """One segment split on the field separator; ``field(n)`` uses HL7 numbering (MSH-9 is ``field(9)``)."""

    def __init__(self, text: str, d: Delimiters) -> None:
        self.d = d
        self.name = text[:3]
        self._fields = text.split(d.field)
        if self.name == "MSH":  # MSH-1 is the separator itself, so MSH fields sit one place to the left
            self._fields.insert(1, d.field)

    def field(self, n: int) -> str:
        return self._fields[n] if n < len(self._fields) else ""

    def repetitions(self, n: int) -> list[str]:
        return self.field(n).split(self.d.repetition)

    def component(self, n: int, c: int, rep: int = 0) -> str:
        """Component ``c`` (1-based) of repetition ``rep``, first subcomponent, escapes decoded."""
        reps = self.repetitions(n)
        if rep >= len(reps):
            return ""
        comps = reps[rep].split(self.d.component)
        if c > len(comps):
            return ""
        return self.d.unescape(comps[c - 1].split(self.d.subcomponent)[0]).strip()

    def text(self, n: int) -> list[str]:
        """A free-text field: each repetition decoded as a whole (separators inside text are not structure)."""
        return [self.d.unescape(r) for r in self.repetitions(n)]


def parse_hl7_ts(value: str) -> datetime | None:
    """HL7 TS/DTM ("20190304", "201903041230", "20190304123000-0500") as UTC; None when unreadable."""
    m = _TS.match(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, offset = m.groups()
    try:
        tz = UTC
        if offset:
            sign = -1 if offset[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
        parsed = datetime(
            int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0), tzinfo=tz
        )
    except ValueError:
        return None
    return parsed.astimezone(UTC)


def _display_date(value: str) -> str:
    parsed = parse_hl7_ts(value)
    if parsed is None:
        return value
    digits = len(value.strip()) - len(value.strip().lstrip("0123456789"))
    # Shown at the precision written: a year alone (a birth year kept under Safe Harbor) is not a day.
    precision = ((12, "%Y-%m-%d %H:%M"), (8, "%Y-%m-%d"), (6, "%Y-%m"), (0, "%Y"))
    return parsed.strftime(next(fmt for least, fmt in precision if digits >= least))


def _name(seg: Segment, n: int, offset: int = 0) -> str:
    """An XPN (family^given^middle) or XCN (id^family^given) name as "given middle family"."""
    family, given, middle = (seg.component(n, offset + i) for i in (1, 2, 3))
    return " ".join(p for p in (given, middle, family) if p)


def patient_header(pid: Segment) -> list[str]:
    lines = []
    name = _name(pid, 5)
    if name:
        lines.append(f"Patient: {name}")
    lines.append(f"MRN: {pid.component(3, 1)}")
    if pid.component(7, 1):
        lines.append(f"Birth date: {_display_date(pid.component(7, 1))}")
    if pid.component(8, 1):
        lines.append(f"Sex: {pid.component(8, 1)}")
    street, city, state, zip_code = (pid.component(11, c) for c in (1, 3, 4, 5))
    region = " ".join(p for p in (state, zip_code) if p)
    address = ", ".join(p for p in (street, city, region) if p)
    if address:
        lines.append(f"Address: {address}")
    if pid.component(13, 1):
        lines.append(f"Phone: {pid.component(13, 1)}")
    return lines


def obx_lines(obx: Segment) -> list[str]:
    """The text of one OBX result; empty for values with no text (encapsulated data, references)."""
    value_type = obx.component(2, 1).upper()
    name = obx.component(3, 2) or obx.component(3, 1)
    if value_type in NARRATIVE_TYPES:
        return [line for value in obx.text(5) for line in value.split("\n")]
    if value_type in NUMERIC_TYPES:
        value = "".join(obx.component(5, c) for c in (1, 2, 3, 4)) if value_type == "SN" else obx.component(5, 1)
        units = obx.component(6, 1)
        ref = obx.component(7, 1)
        flags = " ".join(f for f in (obx.d.unescape(r).strip() for r in obx.repetitions(8)) if f)
        parts = [f"{value} {units}".strip(), f"({ref})" if ref else "", flags]
        return [f"{name}: {' '.join(p for p in parts if p)}"]
    if value_type in CODED_TYPES:
        values = [obx.component(5, 2, i) or obx.component(5, 1, i) for i in range(len(obx.repetitions(5)))]
    elif value_type in SHORT_TYPES:
        values = [v.strip() for v in obx.text(5)]
        if value_type in ("DT", "TS", "DTM"):
            values = [_display_date(v) for v in values]
    else:
        return []
    joined = ", ".join(v for v in values if v)
    if not joined:
        return []
    return [f"{name}: {joined}" if name else joined]


@dataclass
class _Message:
    number: int
    segments: list[str]
    chars: int
    too_large: bool = False


@dataclass
class _Body:
    lines: list[str]
    doc_type: str
    title: str
    when: str
    # Whether any OBX or NTE gave text: a message with headings only is no document.
    has_text: bool


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


def _safe_code(value: str) -> str:
    return value if _SAFE_CODE.fullmatch(value) else "?"


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
    """The document of one message (its segments without terminators), or why it is rejected.

    Ingest calls it on the message as received; the deid stage on the de-identified message, so the two texts
    have the same shape.
    """
    position, index = f"message {number}", number - 1

    def reject(reason: str, detail: str) -> RejectedRecord:
        return RejectedRecord(position, index, reason, detail)

    d = Delimiters.from_msh(segments[0])
    if d is None:
        return reject("malformed_msh", "MSH field separator or encoding characters unusable")
    parsed = [Segment(s, d) for s in segments]
    msh = parsed[0]
    code, trigger = msh.component(9, 1).upper(), msh.component(9, 2).upper()
    if (code, trigger) not in SUPPORTED_TYPES:
        return reject("unsupported_message_type", f"message type {_safe_code(code)}^{_safe_code(trigger)}")
    control_id = msh.component(10, 1)
    if not control_id:
        return reject("malformed_msh", "no message control id (MSH-10)")
    pid = next((s for s in parsed if s.name == "PID"), None)
    if pid is None:
        return reject("missing_pid", "no PID segment")
    patient_key = pid.component(3, 1)
    if not patient_key:
        return reject("missing_patient_id", "PID-3 is empty")
    pv1 = next((s for s in parsed if s.name == "PV1"), None)
    body = _oru_body(parsed) if code == "ORU" else _mdm_body(parsed)
    if not body.has_text:
        return reject("no_text", "the message has no OBX or NTE text")
    text = "\n".join(patient_header(pid) + [""] + body.lines).strip()
    return Document(
        natural_key=control_id,
        position=position,
        record_index=index,
        doc_type=body.doc_type,
        text=text,
        patient_key=patient_key,
        metadata={
            "title": body.title or None,
            "note_type": body.title or None,
            "event_time": parse_hl7_ts(body.when or msh.component(7, 1)),
            "encounter_id": (pv1.component(19, 1) if pv1 else "") or None,
            "message_type": f"{code}^{trigger}",
            "hl7_version": _safe_code(msh.component(12, 1)),
            HL7_MESSAGE_KEY: SEGMENT_END.join(segments),
        },
    )


def _oru_body(segments: list[Segment]) -> _Body:
    lines: list[str] = []
    titles: list[str] = []
    first_time = ""
    numeric = has_text = False
    for seg in segments:
        if seg.name == "OBR":
            title = seg.component(4, 2) or seg.component(4, 1)
            when = seg.component(7, 1)
            first_time = first_time or when
            titles.append(title)
            if lines:
                lines.append("")
            lines.append(" ".join(p for p in (title, f"({_display_date(when)})" if when else "") if p))
        elif seg.name in ("OBX", "NTE"):
            numeric = numeric or (seg.name == "OBX" and seg.component(2, 1).upper() in NUMERIC_TYPES)
            found = obx_lines(seg) if seg.name == "OBX" else [x for t in seg.text(3) for x in t.split("\n")]
            has_text = has_text or any(x.strip() for x in found)
            lines.extend(found)
    doc_type = "lab_report" if numeric else "observation_report"
    return _Body(lines, doc_type, "; ".join(t for t in titles if t), first_time, has_text)


def _mdm_body(segments: list[Segment]) -> _Body:
    txa = next((s for s in segments if s.name == "TXA"), None)
    lines: list[str] = []
    title = when = ""
    if txa is not None:
        title = txa.component(2, 2) or txa.component(2, 1)
        when = txa.component(4, 1) or txa.component(6, 1)
        author = _name(txa, 9, offset=1)
        lines.extend(
            line
            for line in (
                f"Document: {title}" if title else "",
                f"Date: {_display_date(when)}" if when else "",
                f"Author: {author}" if author else "",
            )
            if line
        )
        lines.append("")
    text = [line for seg in segments if seg.name == "OBX" for line in obx_lines(seg)]
    return _Body(lines + text, "clinical_note", title, when, any(x.strip() for x in text))
