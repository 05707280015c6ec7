"""Clinical-note CSV parser: MIMIC-IV-Note columns, custom mappings, gzip, multi-line notes, bad input."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pytest

from medcurate.core.schema import Document, Provenance, documents_to_table
from medcurate.core.spec import SpecError
from pipelines.ingest.base import BadInput, RejectedRecord
from pipelines.ingest.notes_csv import NotesCsvParser

MIMIC_HEADER = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]
DISCHARGE = (
    "Name:  ___ Ellen Park                Unit No:   ___\n"
    "Admission Date:  2180-07-23   Discharge Date:   2180-07-25\n\n"
    'Chief Complaint:\n"worst headache of my life", nausea\n'
)


def csv_text(header: list[str], rows: list[list[str]], delimiter: str = ",") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def test_mimic_columns_multiline_notes_and_line_positions(tmp_path):
    rows = [
        ["10000032-DS-21", "10000032", "22595853", "DS", "21", "2180-07-25 00:00:00", "2180-07-25 21:42:00", DISCHARGE],
        ["10000032-RR-14", "10000032", "", "RR", "14", "2180-07-23 12:35:00", "", "CT head: no acute hemorrhage."],
    ]
    path = tmp_path / "discharge.csv"
    path.write_text(csv_text(MIMIC_HEADER, rows))

    first, second = NotesCsvParser().parse_file(path)
    assert isinstance(first, Document) and isinstance(second, Document)
    assert first.natural_key == "10000032-DS-21" and first.patient_key == "10000032"
    assert first.text == DISCHARGE and first.doc_type == "clinical_note"
    assert (first.position, first.record_index) == ("line 2", 0)
    assert (second.position, second.record_index) == ("line 8", 1)  # the note above spans lines 2-7
    assert first.metadata["encounter_id"] == "22595853" and first.metadata["note_type"] == "DS"
    assert first.metadata["event_time"].isoformat() == "2180-07-25T00:00:00"
    assert first.metadata["note_seq"] == "21"
    assert second.metadata["encounter_id"] is None
    # The other cells, for the deid stage's column profile; the text is the document itself.
    assert json.loads(first.metadata["csv_row"]) == {
        "note_id": "10000032-DS-21", "subject_id": "10000032", "hadm_id": "22595853", "note_type": "DS",
        "note_seq": "21", "charttime": "2180-07-25 00:00:00", "storetime": "2180-07-25 21:42:00",
    }  # fmt: skip

    table = documents_to_table([first, second], Provenance("notes", "notes_csv", "file:///x", "0" * 64, "x",
                                                           "waiver", "r"))  # fmt: skip
    assert table.column("metadata").to_pylist()[0]["event_time"].year == 2180


def test_custom_column_mapping_delimiter_and_gzip(tmp_path):
    header = ["ID", "PATIENT", "CREATED", "KIND", "NOTE_TEXT"]
    rows = [["n1", "MRN-7", "2021-02-03T10:15", "Progress", "Line one;\nline two"]]
    path = tmp_path / "export.csv.gz"
    path.write_bytes(gzip.compress(csv_text(header, rows, delimiter=";").encode()))
    parser = NotesCsvParser(
        {
            "columns": {"note_id": "ID", "subject_id": "PATIENT", "text": "NOTE_TEXT", "charttime": "CREATED",
                        "note_type": "KIND"},
            "delimiter": ";",
        }
    )  # fmt: skip
    [doc] = parser.parse_file(path)
    assert doc.natural_key == "n1" and doc.patient_key == "MRN-7" and doc.text == "Line one;\nline two"
    assert doc.metadata["note_type"] == "Progress" and doc.metadata["event_time"].hour == 10


def test_rows_without_id_or_text_are_rejected_alone(tmp_path):
    rows = [
        ["", "1", "", "DS", "1", "", "", "text without id"],
        ["n2", "1", "", "DS", "2", "", "", "   "],
        ["n4", "", "", "DS", "4", "", "", "a note without its patient"],
        ["n3", "1", "", "DS", "3", "not a date", "", "kept"],
    ]
    path = tmp_path / "notes.csv"
    path.write_text(csv_text(MIMIC_HEADER, rows) + ",,,,,,,\n")
    items = list(NotesCsvParser().parse_file(path))
    assert [(type(i).__name__, i.position) for i in items] == [
        ("RejectedRecord", "line 2"),
        ("RejectedRecord", "line 3"),
        ("RejectedRecord", "line 4"),
        ("Document", "line 5"),
    ]
    reasons = [i.reason for i in items if isinstance(i, RejectedRecord)]
    assert reasons == ["missing_note_id", "missing_text", "missing_subject_id"]
    assert items[3].metadata["event_time"] is None


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("notes.csv", b"note_id,subject_id,charttime\nn1,1,2180-01-01\n", "missing_column"),
        ("notes.csv", b"", "empty_file"),
        ("notes.csv.gz", gzip.compress(b""), "empty_file"),
        ("notes.csv", b"note_id,subject_id,text\nn1,1,Jos\xe9 Ortiz was seen\n", "not_utf8"),
        (
            "notes.csv.gz",
            gzip.compress(("note_id,subject_id,text\n" + "n1,1,Jose Ortiz was seen today\n" * 400).encode())[:-30],
            "truncated_gzip",
        ),
        ("notes.csv", b'note_id,subject_id,text\nn1,1,"Jose Ortiz was seen\nn2,1,cut here\n', "malformed_csv"),
    ],
)
def test_unusable_file_raises_bad_input_without_content(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadInput) as info:
        list(NotesCsvParser().parse_file(path))
    assert info.value.reason == reason
    assert "Ortiz" not in str(info.value)


def test_invalid_options_fail_before_any_file(tmp_path: Path):
    with pytest.raises(SpecError, match="unknown field"):
        NotesCsvParser({"columns": {"body": "TEXT"}})
    with pytest.raises(SpecError, match="unknown key"):
        NotesCsvParser({"encoding": "latin-1"})
