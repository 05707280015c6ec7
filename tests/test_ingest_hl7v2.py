"""HL7 v2 parser: ORU^R01 and MDM^T02, escapes, MLLP framing, rejected messages, bad files; the HL7 sample."""

from __future__ import annotations

import gzip
from collections import Counter

import pytest

from medcurate.core.schema import Document, Provenance, documents_to_table
from medcurate.formats.hl7v2 import Delimiters
from medcurate.sample import hl7 as sample_hl7
from medcurate.sample.people import make_cohort
from pipelines.ingest.base import BadInput, RejectedRecord
from pipelines.ingest.hl7v2 import Hl7v2Parser, message_item

PID = (
    "PID|1||55501234^^^MAIN^MR~998877^^^SSA^SS||Lopez^Maria^J||19610714|F|||12 Elm Street^^Salem^MA^01970"
    "||(978) 555-0142"
)
ORU = [
    "MSH|^~\\&|LIS|LAB|EHR|MAIN|20240305101500-0500||ORU^R01^ORU_R01|CTRL0001|P|2.5.1",
    PID,
    "PV1|1|O|CLINIC||||||||||||||||V12345",
    "OBR|1|ORD1||4548-4^Hemoglobin A1c^LN|||202403050830",
    "OBX|1|NM|4548-4^Hemoglobin A1c^LN||7.2|%|4.0-5.6|H|||F",
    "OBX|2|SN|2160-0^Creatinine^LN||<^0.5|mg/dL|0.6-1.3|L|||F",
    "OBX|3|CE|5778-6^Color of Urine^LN||YEL^Yellow^HL70000||||||F",
    "OBX|4|ED|PDF^Report^L||^application^pdf^Base64^JVBERi0=||||||F",
    "NTE|1||Fasting \\T\\ hydrated; see \\H\\note\\N\\.",
    "OBR|2|ORD2||36643-5^XR Chest 2 Views^LN|||20240305",
    "OBX|1|FT|36643-5^XR Chest^LN||FINDINGS:\\.br\\Lungs clear \\F\\ no effusion.~IMPRESSION: Normal.||||||F",
]
MDM = [
    "MSH|^~\\&|TRANS|MAIN|EHR|MAIN|20240306||MDM^T02|CTRL0002|P|2.6",
    "EVN|T02|20240306",
    PID,
    "TXA|1|DS^Discharge Summary|TX|202403061400|||||1234^Chen^Wei^^^Dr.|||DOC99|||||AU||AV",
    "OBX|1|TX|18842-5^Discharge summary^LN||Maria Lopez was admitted 03/04/2024.||||||F",
    "OBX|2|TX|18842-5^Discharge summary^LN||Discharged home \\E\\ stable; caf\\XC3A9\\ diet.||||||F",
]


def hl7_file(tmp_path, messages: list[list[str]], sep: str = "\r", name: str = "feed.hl7"):
    path = tmp_path / name
    path.write_bytes("".join(sep.join(m) + sep for m in messages).encode())
    return path


def test_oru_renders_results_with_header_and_metadata(tmp_path):
    [doc] = Hl7v2Parser().parse_file(hl7_file(tmp_path, [ORU]))
    assert isinstance(doc, Document)
    assert (doc.natural_key, doc.patient_key, doc.position, doc.record_index) == (
        "CTRL0001",
        "55501234",
        "message 1",
        0,
    )
    assert doc.doc_type == "lab_report"
    assert doc.text.splitlines() == [
        "Patient: Maria J Lopez",
        "MRN: 55501234",
        "Birth date: 1961-07-14",
        "Sex: F",
        "Address: 12 Elm Street, Salem, MA 01970",
        "Phone: (978) 555-0142",
        "",
        "Hemoglobin A1c (2024-03-05 08:30)",
        "Hemoglobin A1c: 7.2 % (4.0-5.6) H",
        "Creatinine: <0.5 mg/dL (0.6-1.3) L",
        "Color of Urine: Yellow",
        "Fasting & hydrated; see note.",
        "",
        "XR Chest 2 Views (2024-03-05)",
        "FINDINGS:",
        "Lungs clear | no effusion.",
        "IMPRESSION: Normal.",
    ]
    assert doc.metadata["event_time"].isoformat() == "2024-03-05T08:30:00+00:00"
    assert doc.metadata["encounter_id"] == "V12345"
    assert doc.metadata["message_type"] == "ORU^R01" and doc.metadata["hl7_version"] == "2.5.1"
    table = documents_to_table([doc], Provenance("lab", "hl7v2", "file:///f", "0" * 64, "x", "waiver", "r"))
    assert table.num_rows == 1
    # The message is kept for the deid stage, which renders the text again from it with the same function.
    assert doc.metadata["hl7_message"].split("\r") == ORU
    assert message_item(1, doc.metadata["hl7_message"].split("\r")).text == doc.text


def test_mdm_note_with_txa_metadata_and_escapes(tmp_path):
    [doc] = Hl7v2Parser().parse_file(hl7_file(tmp_path, [MDM]))
    assert doc.doc_type == "clinical_note" and doc.natural_key == "CTRL0002"
    assert doc.metadata["note_type"] == "Discharge Summary"
    assert doc.metadata["event_time"].isoformat() == "2024-03-06T14:00:00+00:00"
    body = doc.text.split("\n\n", 2)[1:]
    assert body[0] == "Document: Discharge Summary\nDate: 2024-03-06 14:00\nAuthor: Wei Chen"
    assert body[1] == "Maria Lopez was admitted 03/04/2024.\nDischarged home \\ stable; café diet."


def test_mllp_framing_newlines_and_rejected_messages(tmp_path):
    adt = ["MSH|^~\\&|ADT|MAIN|EHR|MAIN|20240301||ADT^A08|CTRL0003|P|2.5", "EVN|A08|20240301", PID]
    no_pid = [ORU[0].replace("CTRL0001", "CTRL0004"), *ORU[3:5]]
    bad_msh = ["MSH|^~|LIS", "PID|1||1"]
    no_text = [MDM[0].replace("CTRL0002", "CTRL0005"), *MDM[1:4]]  # TXA heading, no OBX
    messages = [ORU, adt, no_pid, bad_msh, no_text, MDM]
    path = tmp_path / "framed.hl7"
    path.write_bytes("".join(f"\x0b{chr(10).join(m)}\n\x1c\r\n" for m in messages).encode())
    items = list(Hl7v2Parser().parse_file(path))
    assert [(type(i).__name__, i.position) for i in items] == [
        ("Document", "message 1"),
        ("RejectedRecord", "message 2"),
        ("RejectedRecord", "message 3"),
        ("RejectedRecord", "message 4"),
        ("RejectedRecord", "message 5"),
        ("Document", "message 6"),
    ]
    assert [i.reason for i in items if isinstance(i, RejectedRecord)] == [
        "unsupported_message_type",
        "missing_pid",
        "malformed_msh",
        "no_text",
    ]
    assert items[1].detail == "message type ADT^A08"
    assert items[0].text == next(Hl7v2Parser().parse_file(hl7_file(tmp_path, [ORU]))).text


def test_escape_sequences():
    d = Delimiters.from_msh("MSH|^~\\&|X")
    assert d is not None
    assert d.unescape("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f") == "a|b^c&d~e\\f"
    assert d.unescape("line\\.br\\next\\.sp\\end") == "line\nnext\nend"
    assert d.unescape("\\X48656C6C6F\\ \\XE9\\ \\H\\bold\\N\\") == "Hello é bold"
    assert d.unescape("kept \\Q\\ as written") == "kept \\Q\\ as written"
    assert Delimiters.from_msh("MSH|^^\\&|X") is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty_file"),
        (b"PID|1||55501234||Lopez^Maria\rOBX|1|TX|||text\r", "no_msh_segment"),
        (("\r".join(ORU) + "\r").encode().replace(b"Lopez", b"L\xf3pez"), "not_utf8"),
        (gzip.compress(("\r".join(ORU) + "\r").encode() * 20)[:-10], "truncated_gzip"),
    ],
)
def test_unusable_file_raises_bad_input_without_content(tmp_path, content, reason):
    path = tmp_path / "feed.hl7"
    path.write_bytes(content)
    with pytest.raises(BadInput) as info:
        list(Hl7v2Parser().parse_file(path))
    assert info.value.reason == reason
    assert "pez" not in str(info.value)


def test_sample_writer_is_deterministic_and_parses(tmp_path):
    cohort = make_cohort(12, 9)
    planted = sample_hl7.write(tmp_path / "a", cohort, 9)
    sample_hl7.write(tmp_path / "b", cohort, 9)
    files = sorted((tmp_path / "a" / "incoming" / "hl7").iterdir())
    assert [f.read_bytes() for f in files] == [
        (tmp_path / "b" / "incoming" / "hl7" / f.name).read_bytes() for f in files
    ]
    assert sum(f.stat().st_size for f in files) < 200_000

    parser = Hl7v2Parser()
    kinds: Counter[str] = Counter()
    texts = []
    for path in files:
        if path.name == "legacy-feed.hl7":
            with pytest.raises(BadInput, match="not_utf8"):
                list(parser.parse_file(path))
            continue
        for item in parser.parse_file(path):
            kinds[item.doc_type if isinstance(item, Document) else item.reason] += 1
            texts.append(getattr(item, "text", ""))
    assert kinds == {"lab_report": 12, "observation_report": 1, "clinical_note": 7, "unsupported_message_type": 1}
    joined = "\n".join(texts)
    for patient in cohort:
        assert patient.mrn in joined and patient.person.full in joined
    raw = b"".join(f.read_bytes() for f in files).decode("latin-1")
    assert planted and all(s in raw or s in joined for s in planted)
