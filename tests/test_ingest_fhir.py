"""FHIR parser: Bundles and bulk NDJSON, timelines, base64 documents, bad input; and the FHIR sample writer."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from medcurate.core.schema import Document, Provenance, documents_to_table
from medcurate.formats.fhir_timeline import timeline_from_bundle
from medcurate.sample import fhir as sample_fhir
from medcurate.sample.people import make_cohort
from pipelines.ingest.base import BadInput, RejectedRecord, Skipped
from pipelines.ingest.fhir import FhirParser

PID = "9f1c2b4e-0000-4000-8000-000000000001"
NOTE = "Discharge summary for Maria Lopez, MRN 55501234, seen 03/04/2019.\nFollow up with Dr. Chen."


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def cc(system: str, code: str, display: str) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}]}


SNOMED, LOINC = "http://snomed.info/sct", "http://loinc.org"
SUBJECT = {"reference": f"urn:uuid:{PID}"}


def resources() -> list[dict]:
    """Every supported type, deliberately out of date order; the Patient comes last."""
    return [
        {"resourceType": "Observation", "id": "o1", "status": "final", "subject": SUBJECT,
         "code": cc(LOINC, "4548-4", "Hemoglobin A1c"), "effectiveDateTime": "2019-03-05T08:00:00Z",
         "valueQuantity": {"value": 7.2, "unit": "%"},
         "referenceRange": [{"low": {"value": 4.0, "unit": "%"}, "high": {"value": 5.6, "unit": "%"}}]},
        {"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": SUBJECT,
         "class": {"code": "IMP"}, "type": [{"text": "Emergency department"}],
         "period": {"start": "2019-03-04T22:00:00-05:00", "end": "2019-03-06"}},
        {"resourceType": "Condition", "id": "c1", "subject": SUBJECT, "onsetDateTime": "2019-03-05",
         "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
         "code": cc(SNOMED, "44054006", "Type 2 diabetes mellitus")},
        {"resourceType": "MedicationRequest", "id": "m1", "status": "active",
         "subject": {"reference": f"Patient/{PID}"}, "authoredOn": "2019-03-06",
         "dosageInstruction": [{"text": "500 mg twice daily"}],
         "medicationCodeableConcept": cc("http://www.nlm.nih.gov/research/umls/rxnorm", "860975", "metformin")},
        {"resourceType": "Procedure", "id": "pr1", "status": "completed", "subject": SUBJECT,
         "code": cc(SNOMED, "73761001", "Colonoscopy"), "performedPeriod": {"start": "2018"}},
        {"resourceType": "Immunization", "id": "i1", "status": "completed", "patient": SUBJECT,
         "vaccineCode": cc("http://hl7.org/fhir/sid/cvx", "140", "Influenza vaccine")},
        {"resourceType": "DiagnosticReport", "id": "dr1", "status": "final", "subject": SUBJECT,
         "category": [cc("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD", "Radiology")],
         "code": cc(LOINC, "36643-5", "XR Chest 2 Views"), "effectiveDateTime": "2019-03-05T10:00:00Z",
         "encounter": {"reference": "Encounter/e1"}, "conclusion": "No acute process.",
         "presentedForm": [{"contentType": "text/plain", "data": b64("CHEST X-RAY\nLungs clear.")}]},
        {"resourceType": "DocumentReference", "id": "d1", "status": "current", "subject": SUBJECT,
         "type": cc(LOINC, "18842-5", "Discharge summary"), "date": "2019-03-06T12:00:00Z",
         "context": {"encounter": [{"reference": "urn:uuid:enc-e1"}]},
         "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": b64(NOTE)}},
                     {"attachment": {"contentType": "application/pdf", "data": b64("%PDF-1.4")}}]},
        {"resourceType": "Practitioner", "id": "dr-chen"},
        {"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1961-07-14",
         "name": [{"use": "official", "family": "Lopez", "given": ["Maria"]}],
         "identifier": [{"type": cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "MRN"),
                         "value": "55501234"}],
         "address": [{"line": ["12 Elm Street"], "city": "Salem", "state": "MA", "postalCode": "01970"}]},
    ]  # fmt: skip


def write_bundle(path: Path, entries: list[dict]) -> Path:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in entries],
    }
    bundle["entry"][1]["fullUrl"] = "urn:uuid:enc-e1"  # the Encounter's fullUrl differs from its id
    path.write_text(json.dumps(bundle))
    return path


def parse_all(parser: FhirParser, *paths: Path) -> tuple[list, list[tuple[Path, Document]]]:
    items = [item for path in paths for item in parser.parse_file(path)]
    return items, list(parser.finalize())


def test_bundle_gives_documents_and_one_chronological_timeline(tmp_path):
    path = write_bundle(tmp_path / "bundle.json", resources())
    items, timelines = parse_all(FhirParser(), path)

    docs = {d.natural_key: d for d in items if isinstance(d, Document)}
    assert set(docs) == {"DiagnosticReport/dr1", "DocumentReference/d1"}
    assert not [r for r in items if isinstance(r, RejectedRecord)]
    assert [s for s in items if isinstance(s, Skipped)] == [Skipped("referenced_context")]  # the Practitioner

    [(attributed, timeline)] = timelines
    assert attributed == path
    assert timeline.natural_key == f"timeline/{PID}" and timeline.patient_key == PID
    assert timeline.doc_type == "patient_timeline" and timeline.position == "entry 10"
    lines = timeline.text.splitlines()
    assert lines[:6] == [
        "Patient: Maria Lopez",
        "MRN: 55501234",
        "Birth date: 1961-07-14",
        "Gender: female",
        "Address: 12 Elm Street, Salem, MA 01970",
        "",
    ]
    events = lines[6:]
    assert [e.split(": ")[0].split(" ", 1)[1] for e in events] == [
        "Procedure",  # 2018
        "Encounter",  # 2019-03-04 22:00 local time (-05:00): ordered by the date it shows
        "Condition",
        "Observation",
        "DiagnosticReport",
        "MedicationRequest",
        "DocumentReference",
        "Immunization",  # undated: last
    ]
    assert events[0] == "2018 Procedure: Colonoscopy (SNOMED 73761001) completed"
    assert events[2] == "2019-03-05 Condition: Type 2 diabetes mellitus active (SNOMED 44054006)"
    assert events[3] == "2019-03-05 Observation: Hemoglobin A1c 7.2 % (ref 4.0 % - 5.6 %) (LOINC 4548-4)"
    assert "Encounter: inpatient (Emergency department), until 2019-03-06" in events[1]
    assert "metformin (RxNorm 860975) active - 500 mg twice daily" in events[5]
    assert events[7].startswith("undated Immunization: Influenza vaccine (CVX 140)")
    assert timeline.metadata["event_time"].isoformat() == "2018-01-01T00:00:00+00:00"

    # The payload the deid stage renders the timeline from again: the same text, no attachment bytes.
    bundle = json.loads(timeline.metadata["fhir_json"])
    assert timeline_from_bundle(bundle).text == timeline.text
    assert [e["resource"]["resourceType"] for e in bundle["entry"]][:2] == ["Patient", "Observation"]
    assert '"data"' not in timeline.metadata["fhir_json"] + docs["DocumentReference/d1"].metadata["fhir_json"]
    assert json.loads(docs["DiagnosticReport/dr1"].metadata["fhir_json"])["conclusion"] == "No acute process."


def test_document_reference_and_report_are_decoded_from_base64(tmp_path):
    items, _ = parse_all(FhirParser(), write_bundle(tmp_path / "b.json", resources()))
    docs = {d.natural_key: d for d in items if isinstance(d, Document)}

    note = docs["DocumentReference/d1"]
    assert note.text == NOTE.strip()  # the PDF attachment is not text and is left out
    assert note.doc_type == "clinical_note" and note.patient_key == PID and note.position == "entry 8"
    assert note.metadata["note_type"] == "Discharge summary"
    assert note.metadata["encounter_id"] == "e1"  # urn:uuid resolved through the Bundle's fullUrl
    assert note.metadata["event_time"].isoformat() == "2019-03-06T12:00:00+00:00"

    report = docs["DiagnosticReport/dr1"]
    assert report.doc_type == "diagnostic_report"
    assert report.text == "CHEST X-RAY\nLungs clear.\n\nConclusion: No acute process."
    assert report.metadata["encounter_id"] == "e1" and report.metadata["title"] == "XR Chest 2 Views"

    table = documents_to_table(list(docs.values()), Provenance("ehr", "fhir", "file:///b.json", "0" * 64, "x",
                                                                "waiver", "run1"))  # fmt: skip
    assert table.num_rows == 2


def test_bulk_export_spreads_a_patient_over_files_and_rejects_bad_lines(tmp_path):
    by_type: dict[str, list[dict]] = {}
    for r in resources():
        r = json.loads(json.dumps(r).replace(f"urn:uuid:{PID}", f"Patient/{PID}"))
        by_type.setdefault(r["resourceType"], []).append(r)
    paths = []
    for rtype, rs in sorted(by_type.items()):
        lines = [json.dumps(r) for r in rs]
        if rtype == "Observation":
            lines += ["", '{"resourceType": "Observation", "id": "o2", "subj', json.dumps({**rs[0], "id": "o3"})]
        path = tmp_path / f"{rtype}.ndjson"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    gz = tmp_path / "Immunization.ndjson.gz"
    gz.write_bytes(gzip.compress((tmp_path / "Immunization.ndjson").read_bytes()))
    paths[paths.index(tmp_path / "Immunization.ndjson")] = gz

    items, timelines = parse_all(FhirParser(), *paths)
    bad = [r for r in items if isinstance(r, RejectedRecord) and r.reason == "malformed_json"]
    assert [(r.position, r.record_index) for r in bad] == [("line 3", 1)]
    [(attributed, timeline)] = timelines
    assert attributed == tmp_path / "Patient.ndjson" and timeline.position == "line 1"
    assert timeline.text.count("Hemoglobin A1c") == 2  # o1 and o3; o2 was rejected
    assert "Immunization: Influenza vaccine" in timeline.text


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("bundle.json", b'{"resourceType": "Bundle", "entry": [{"resource": {"name": "Maria Lopez"', "malformed_json"),
        ("bundle.json", b"", "empty_file"),
        ("bundle.json", b'["Maria Lopez"]', "not_fhir"),
        (
            "Patient.ndjson",
            b'{"resourceType": "Patient", "id": "1", "name": [{"text": "Jos\xe9 Lopez"}]}\n',
            "not_utf8",
        ),
        ("Patient.ndjson.gz", gzip.compress(b'{"resourceType": "Patient", "id": "1"}\n' * 50)[:-12], "truncated_gzip"),
    ],
)
def test_unusable_file_raises_bad_input_without_content(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadInput) as info:
        list(FhirParser().parse_file(path))
    assert info.value.reason == reason
    assert "Lopez" not in str(info.value)


def test_a_failed_file_adds_nothing_to_the_timelines(tmp_path):
    parser = FhirParser()
    good = tmp_path / "Condition.ndjson"
    good.write_text(json.dumps(resources()[2]) + "\n")
    bad = tmp_path / "Observation.ndjson"
    bad.write_bytes(json.dumps(resources()[0]).encode() + b"\n" + b"\xff\xfe broken\n")
    list(parser.parse_file(good))
    with pytest.raises(BadInput):
        list(parser.parse_file(bad))
    [(_, timeline)] = list(parser.finalize())
    assert "Condition" in timeline.text and "Observation" not in timeline.text


def test_resources_without_a_patient_are_rejected(tmp_path):
    orphans = [{**r, "subject": {"reference": "Group/g1"}} for r in resources()[:1] + resources()[7:8]]
    path = tmp_path / "orphans.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in orphans) + "\n")
    parser = FhirParser()
    assert [(i.reason, i.position) for i in parser.parse_file(path)] == [
        ("no_patient_reference", "line 1"),
        ("no_patient_reference", "line 2"),
    ]
    assert list(parser.finalize()) == []


def test_bad_attachment_rejects_that_document_only(tmp_path):
    doc = {**resources()[7], "content": [{"attachment": {"contentType": "text/plain", "data": "not base64!"}}]}
    path = tmp_path / "DocumentReference.ndjson"
    path.write_text(json.dumps(doc) + "\n")
    [rejected] = [i for i in FhirParser().parse_file(path) if isinstance(i, RejectedRecord)]
    assert rejected.reason == "bad_base64"


def test_sample_writer_is_deterministic_small_and_parses(tmp_path):
    cohort = make_cohort(12, 5)
    planted = sample_fhir.write(tmp_path / "a", cohort, 5)
    sample_fhir.write(tmp_path / "b", cohort, 5)
    files = sorted((tmp_path / "a" / "incoming" / "fhir").iterdir())
    assert [f.read_bytes() for f in files] == [
        (tmp_path / "b" / "incoming" / "fhir" / f.name).read_bytes() for f in files
    ]
    assert sum(f.stat().st_size for f in files) < 1_000_000
    assert len([f for f in files if f.suffix == ".json"]) == sample_fhir.BUNDLE_PATIENTS

    items, timelines = parse_all(FhirParser(), *files)
    docs = [i for i in items if isinstance(i, Document)]
    rejected = [i for i in items if isinstance(i, RejectedRecord)]
    assert [r.reason for r in rejected] == ["malformed_json"]
    assert len(timelines) == 12 and len({t.patient_key for _, t in timelines}) == 12
    notes = [d for d in docs if d.doc_type == "clinical_note"]
    assert len(notes) == 12
    assert any(d.doc_type == "diagnostic_report" for d in docs)
    raw = "".join(d.text for d in docs) + "".join(t.text for _, t in timelines)
    for patient in cohort:
        assert patient.person.full in raw and patient.mrn in raw and patient.phone in raw
    written = "".join(f.read_text() for f in files)
    assert planted and all(s in written for s in planted)
    for rtype in ("Encounter", "Condition", "Observation", "MedicationRequest", "Immunization", "DiagnosticReport"):
        assert all(f" {rtype}: " in t.text for _, t in timelines)
