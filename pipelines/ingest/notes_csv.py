"""Clinical notes from CSV exports (MIMIC-IV-Note layout by default), streamed row by row.

Note exports are large (MIMIC-IV discharge notes are several GB), so the file is read with the csv module one
record at a time, never loaded whole.  The column names of other exports are mapped in the source options::

    options:
      columns: {note_id: ID, subject_id: PATIENT, text: NOTE_TEXT, charttime: CREATED}
      delimiter: ";"

One row becomes one ``clinical_note``: natural key = note_id, patient_key = subject_id, encounter_id = hadm_id,
event_time = charttime, note_type as written.  ``storetime`` (an administrative timestamp) is not kept: it
would only be one more date to shift.  The position is the physical line where the record starts, so a
multi-line quoted note is found where an editor shows it.  A row without note_id, subject_id or text is
rejected alone, and so is a row longer than the source's record cap (``record_too_large``,
``pipelines/ingest/limits.yaml``), which is never held whole; a header without one of those columns makes the
whole file unusable.

The row's other cells (every column but the text, under their field name when mapped, else under their
header name) are kept as JSON in ``metadata.extra["csv_row"]`` (raw zone only): the deid stage de-identifies
them by the ``notes_csv`` column profile of ``structured_rules.yaml``, which drops any column it does not list.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from medcurate.core.schema import CSV_ROW_KEY, Document
from medcurate.core.spec import SpecError
from pipelines.ingest.base import BadInput, ParsedItem, Parser, RejectedRecord
from pipelines.ingest.files import SKIP_CHUNK, open_text
from pipelines.ingest.limits import RECORD_TOO_LARGE

DEFAULT_COLUMNS = {
    "note_id": "note_id",
    "subject_id": "subject_id",
    "hadm_id": "hadm_id",
    "note_type": "note_type",
    "note_seq": "note_seq",
    "charttime": "charttime",
    "text": "text",
}
# A file lacking one of these cannot give documents with an id, a patient and text: the export is wrong.
REQUIRED_COLUMNS = ("note_id", "subject_id", "text")
QUOTE = '"'


def parse_charttime(value: str) -> datetime | None:
    """ISO-like timestamps ("2180-07-23 12:35:00", "2180-07-23T12:35", "2180-07-23"); others give None."""
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


class _RecordTooLarge(Exception):
    """The CSV record being read is longer than the record cap."""


class _RecordLines:
    """Physical lines for ``csv.reader``, which pulls them one at a time until a record is complete.

    It counts the current record's characters and quote characters, raises ``_RecordTooLarge`` before the
    record grows past the cap, and ``skip_record`` then discards the rest of that record a chunk at a time: up
    to a line end with an even number of quotes since the record began (RFC 4180 doubles a quote inside a
    quoted cell, so an odd count means the line end is inside a cell).  Memory stays within the cap.
    """

    def __init__(self, text: TextIO, max_chars: int) -> None:
        self.text = text
        self.max_chars = max_chars
        self.line_num = 0
        self.chars = 0
        self.quotes = 0
        self.last = ""

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        line = self._read(self.max_chars - self.chars + 1)
        if not line:
            raise StopIteration
        self.chars += len(line)
        if self.chars > self.max_chars:
            raise _RecordTooLarge
        return line

    def _read(self, size: int) -> str:
        if self.last == "" or self.last.endswith(("\n", "\r")):
            self.line_num += 1
        line = self.text.readline(size)
        self.quotes += line.count(QUOTE)
        self.last = line or self.last
        return line

    def skip_record(self) -> None:
        while not (self.last.endswith(("\n", "\r")) and self.quotes % 2 == 0):
            if not self._read(SKIP_CHUNK):
                break
        self.record_done()

    def record_done(self) -> None:
        self.chars = 0
        self.quotes = 0


class NotesCsvParser(Parser):
    kind = "notes_csv"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        unknown = set(self.options) - {"columns", "delimiter"}
        if unknown:
            raise SpecError(f"notes_csv options: unknown key(s) {sorted(unknown)}; allowed: columns, delimiter")
        mapping = dict(self.options.get("columns") or {})
        unknown_columns = set(mapping) - set(DEFAULT_COLUMNS)
        if unknown_columns:
            raise SpecError(
                f"notes_csv options.columns: unknown field(s) {sorted(unknown_columns)}; "
                f"allowed: {sorted(DEFAULT_COLUMNS)}"
            )
        self.columns = {**DEFAULT_COLUMNS, **{k: str(v) for k, v in mapping.items()}}
        self.delimiter = str(self.options.get("delimiter", ","))
        if len(self.delimiter) != 1:
            raise SpecError("notes_csv options.delimiter must be a single character")
        # A cell is never longer than its row, whose cap ``_RecordLines`` enforces first (the csv default of
        # 131072 characters is too small for a discharge summary).
        csv.field_size_limit(max(csv.field_size_limit(), self.limits.max_record_bytes))

    def parse_file(self, path: Path) -> Iterator[ParsedItem]:
        with open_text(path, self.limits) as f:
            lines = _RecordLines(f, self.limits.max_record_bytes)
            # strict: a stray or unterminated quote raises instead of silently merging notes (a file cut in
            # the middle of a quoted note would otherwise swallow the rest of the file into one record).
            reader = csv.reader(lines, delimiter=self.delimiter, quotechar=QUOTE, strict=True)
            header = self._read_header(reader, lines)
            index = {field: header.index(name) for field, name in self.columns.items() if name in header}
            # Unmapped columns keep their header name unless it is taken by a field name.
            index.update(
                {name: i for i, name in enumerate(header) if name and i not in index.values() and name not in index}
            )
            record_index = 0
            while True:
                start_line = lines.line_num + 1
                try:
                    row = next(reader, None)
                except _RecordTooLarge:
                    lines.skip_record()
                    yield RejectedRecord(f"line {start_line}", record_index, RECORD_TOO_LARGE, "row over the cap")
                    record_index += 1
                    continue
                except csv.Error:
                    raise BadInput("malformed_csv", f"unreadable CSV record starting at line {start_line}") from None
                lines.record_done()
                if row is None:
                    return
                if any(cell.strip() for cell in row):
                    yield self._row_item(row, index, start_line, record_index)
                    record_index += 1

    def _read_header(self, reader: Any, lines: _RecordLines) -> list[str]:
        try:
            header = next(reader, None)
        except csv.Error:
            raise BadInput("malformed_csv", "unreadable header line") from None
        except _RecordTooLarge:
            raise BadInput(RECORD_TOO_LARGE, "the header line is over the record cap") from None
        lines.record_done()
        if not header or not any(h.strip() for h in header):
            raise BadInput("missing_header", "the first line is not a column header")
        header = [h.strip() for h in header]
        missing = [self.columns[f] for f in REQUIRED_COLUMNS if self.columns[f] not in header]
        if missing:
            raise BadInput("missing_column", f"required column(s) {missing} not in the header")
        return header

    def _row_item(self, row: list[str], index: dict[str, int], line: int, record_index: int) -> ParsedItem:
        position = f"line {line}"

        def cell(field: str) -> str:
            i = index.get(field)
            return row[i].strip() if i is not None and i < len(row) else ""

        note_id = cell("note_id")
        if not note_id:
            return RejectedRecord(position, record_index, "missing_note_id", "the note_id cell is empty")
        subject_id = cell("subject_id")
        if not subject_id:
            # A note without its patient can be neither pseudonymized nor kept to one split per patient.
            return RejectedRecord(position, record_index, "missing_subject_id", "the subject_id cell is empty")
        i = index["text"]
        text = row[i] if i < len(row) else ""
        if not text.strip():
            return RejectedRecord(position, record_index, "missing_text", "the text cell is empty")
        charttime = cell("charttime")
        return Document(
            natural_key=note_id,
            position=position,
            record_index=record_index,
            doc_type="clinical_note",
            text=text,
            patient_key=subject_id,
            metadata={
                "event_time": parse_charttime(charttime) if charttime else None,
                "encounter_id": cell("hadm_id") or None,
                "note_type": cell("note_type") or None,
                "note_seq": cell("note_seq") or None,
                CSV_ROW_KEY: json.dumps(
                    {name: cell(name) for name in index if name != "text"}, separators=(",", ":"), ensure_ascii=False
                ),
            },
        )
