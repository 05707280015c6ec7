"""The deid stage on a tiny raw zone: text replaced, keys pseudonymized, dates shifted, quarantine honoured."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydicom import examples

from medcurate.core.context import RunContext
from medcurate.core.keys import pseudonym
from medcurate.core.schema import (
    DEID_DOCUMENT_SCHEMA,
    QUARANTINE_SCHEMA,
    Document,
    Provenance,
    documents_to_table,
    make_doc_id,
)
from medcurate.core.spec import CorpusSpec, SourceSpec
from medcurate.core.zones import Zones, write_parquet
from pipelines.deid import stage
from pipelines.deid.config import default_config
from pipelines.deid.engine import PhiSpan
from pipelines.deid.surrogates import Replacer
from pipelines.ingest.dicom import instance_document

KEY = b"stage-test-key-0123456789"
NOTE = "Pt Anna Kowalski (MRN 48213377) seen by Dr. Okafor on 07/22/2019. BP 120/80. Call (555) 123-4567."
CHART = datetime(2019, 7, 22, 8, 30, tzinfo=UTC)


def _provenance(source: str, kind: str) -> Provenance:
    return Provenance(source, kind, f"file:///in/{source}", "0" * 64, "synthetic", "waiver", "run-ingest")


@pytest.fixture()
def ctx(tmp_path) -> RunContext:
    zones = Zones(tmp_path / "data").ensure()
    notes = [
        Document(
            natural_key=f"n{i}",
            position=f"line {i}",
            record_index=i,
            doc_type="clinical_note",
            text=NOTE,
            patient_key="48213377",
            metadata={"event_time": CHART, "encounter_id": "2001", "note_seq": "1", "subject_name": "Kowalski"},
        )
        for i in range(3)
    ]
    write_parquet(documents_to_table(notes, _provenance("notes", "notes_csv")), zones.raw / "notes" / "part-0.parquet")
    paper = Document("p1", "entry 0", 0, "abstract", "Parkinson disease in 2019: a review by Smith et al.")
    write_parquet(documents_to_table([paper], _provenance("pubmed", "pubmed")), zones.raw / "pubmed" / "p.parquet")
    dicom = instance_document(examples.ct)
    write_parquet(documents_to_table([dicom], _provenance("imaging", "dicom")), zones.raw / "imaging" / "i.parquet")
    earlier = {
        "run_id": "r",
        "stage": "validate",
        "source": "notes",
        "source_file": "src-00000000000000aa",
        "reason": "bad",
        "doc_id": make_doc_id("notes", "n2"),
    }
    write_parquet(
        pa.Table.from_pylist([earlier], schema=QUARANTINE_SCHEMA), zones.quarantine / "validate_raw" / "notes.parquet"
    )
    spec = CorpusSpec(
        sources=(SourceSpec(name="notes", kind="notes_csv", paths=("x",), license="synthetic", legal_basis="waiver"),)
    )
    return RunContext(spec=spec, zones=zones, run_id="run-deid", secret_key=KEY)


def test_stage_round_trip(ctx):
    report = stage.run(ctx)
    notes = pq.read_table(ctx.zones.deid / "notes" / "part-0.parquet")
    assert notes.schema.equals(DEID_DOCUMENT_SCHEMA, check_metadata=False)
    rows = notes.to_pylist()
    assert len(rows) == 2  # n2 was quarantined by an earlier stage
    replacer = Replacer(KEY, default_config())
    for row in rows:
        for phi in ("Kowalski", "Okafor", "48213377", "07/22/2019", "123-4567"):
            assert phi not in row["text"]
        assert "BP 120/80" in row["text"]
        assert row["patient_pseudonym"] == pseudonym(KEY, "48213377")
        assert row["metadata"]["event_time"] == CHART - timedelta(days=replacer.date_offset_days("48213377"))
        assert row["metadata"]["encounter_id"] != "2001"
        assert dict(row["metadata"]["extra"]) == {"note_seq": "1"}
    assert rows[0]["text"] == rows[1]["text"]  # same patient, same surrogates

    paper = pq.read_table(ctx.zones.deid / "pubmed" / "p.parquet").to_pylist()[0]
    assert paper["text"].startswith("Parkinson disease in 2019")

    counts = report.to_dict()["sources"]
    assert counts["notes"] == {"input": 3, "output": 2, "removed": {"quarantined_earlier": 1}}
    details = report.details
    assert details["phi_by_type"]["NAME"] >= 4 and details["phi_by_source"]["notes"]["ID"] == 2
    assert details["extra_keys_dropped"] == {"subject_name": 2}
    dumped = json.dumps(report.to_dict())
    assert "Kowalski" not in dumped and "48213377" not in dumped

    imaging = counts["imaging"]
    assert imaging["input"] == 1 and imaging["output"] + sum(imaging["removed"].values()) == 1

    review = [json.loads(line) for line in (ctx.zones.governance / "deid_review_sample.jsonl").open()]
    assert review and all("Kowalski" not in r["text"] for r in review)
    assert any("«" in r["text"] for r in review)


HL7_ORU = "\r".join(
    [
        "MSH|^~\\&|LIS|LAB|EHR|MAIN|20190722143000||ORU^R01|CTRL0001|P|2.5.1",
        "PID|1||48213377^^^MAIN^MR||Kowalski^Anna||19610304|F|||42 MAPLE ST^^SPRINGFIELD^IL^62704^USA||(555)123-4567",
        "PV1|1|O|5N^512^B||||1234^OKAFOR^CHIDI^^^Dr.||||||||||||V778812",
        "OBR|1|ORD1||24323-8^Metabolic panel^LN|||20190722080000",
        "OBX|1|NM|2345-7^Glucose^LN||100|mg/dL|70-99|H|||F",
        "OBX|2|TX|NOTE^Comment||Anna called from (555) 123-4567; reviewed by Dr. Okafor.||||||F",
    ]
)
TIMELINE_BUNDLE = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"resource": {"resourceType": "Patient", "id": "48213377", "name": [{"family": "Kowalski", "given": ["Anna"]}],
                      "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "48213377"}],
                      "birthDate": "1961-03-04", "telecom": [{"system": "phone", "value": "(555) 123-4567"}]}},
        {"resource": {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/48213377"},
                      "onsetDateTime": "2019-07-22", "code": {"text": "Type 2 diabetes mellitus"}}},
    ],
}  # fmt: skip


@pytest.fixture()
def structured_ctx(tmp_path) -> RunContext:
    """One good HL7 message and FHIR timeline, and three records whose payload cannot be used."""
    from medcurate.core.schema import FHIR_JSON_KEY
    from medcurate.formats.fhir_timeline import timeline_from_bundle
    from pipelines.ingest.hl7v2 import message_item

    zones = Zones(tmp_path / "data").ensure()
    good_hl7 = message_item(1, HL7_ORU.split("\r"))
    broken_hl7 = Document("CTRL0002", "message 2", 1, "lab_report", good_hl7.text, "48213377",
                          {**good_hl7.metadata, "hl7_message": "not an HL7 message"})  # fmt: skip
    write_parquet(
        documents_to_table([good_hl7, broken_hl7], _provenance("lab", "hl7v2")), zones.raw / "lab" / "p.parquet"
    )
    text = timeline_from_bundle(TIMELINE_BUNDLE).text

    def timeline(key: str, payload: str | None) -> Document:
        return Document(f"timeline/{key}", "entry 1", int(key), "patient_timeline", text, "48213377",
                        {"title": "Patient timeline", **({FHIR_JSON_KEY: payload} if payload else {})})  # fmt: skip

    timelines = [timeline("1", json.dumps(TIMELINE_BUNDLE)), timeline("2", "{not json"), timeline("3", None)]
    write_parquet(documents_to_table(timelines, _provenance("ehr", "fhir")), zones.raw / "ehr" / "p.parquet")
    spec = CorpusSpec(
        sources=(SourceSpec(name="lab", kind="hl7v2", paths=("x",), license="synthetic", legal_basis="waiver"),)
    )
    return RunContext(spec=spec, zones=zones, run_id="run-structured", secret_key=KEY)


def test_structured_records_are_rendered_from_their_deidentified_payload(structured_ctx):
    zones = structured_ctx.zones
    report = stage.run(structured_ctx)
    [hl7] = pq.read_table(zones.deid / "lab" / "p.parquet").to_pylist()
    [fhir] = pq.read_table(zones.deid / "ehr" / "p.parquet").to_pylist()
    replacer = Replacer(KEY, default_config())
    name = replacer.apply("Anna Kowalski", [PhiSpan(0, 4, "NAME"), PhiSpan(5, 13, "NAME")], "48213377").text
    birth = (date(1961, 3, 4) - timedelta(days=replacer.date_offset_days("48213377"))).isoformat()
    for row in (hl7, fhir):
        assert row["text"].startswith(f"Patient: {name}\nMRN: {pseudonym(KEY, '48213377')}\nBirth date: {birth}\n")
    assert "Glucose: 100 mg/dL (70-99) H" in hl7["text"]
    assert f"{name.split()[0]} called from [PHONE]; reviewed by Dr. " in hl7["text"]  # the OBX text leaf
    extra = dict(hl7["metadata"]["extra"])
    for phi in ("Kowalski", "KOWALSKI", "ANNA", "Anna", "48213377", "MAPLE", "SPRINGFIELD", "62704", "555", "OKAFOR",
                "Okafor", "V778812", "19610304", "20190722", "CTRL0001", "ORD1"):  # fmt: skip
        assert (
            phi not in hl7["text"] + extra["hl7_message"] + fhir["text"] + dict(fhir["metadata"]["extra"])["fhir_json"]
        )
    assert "^^^IL^627^USA" in extra["hl7_message"]  # the address keeps its state and ZIP3

    quarantined = pq.read_table(zones.quarantine / "deid").to_pylist()
    assert sorted((q["source"], q["reason"]) for q in quarantined) == [
        ("ehr", "malformed_structured_payload"),
        ("ehr", "missing_structured_payload"),
        ("lab", "structured_deid_failed"),
    ]
    actions = report.details["structured_actions"]
    assert (
        actions["hl7v2:PID-5:name"] == 1 and actions["hl7v2:OBX-5:text"] == 1 and actions["fhir:Patient.name:name"] == 1
    )
    events = pq.read_table(zones.governance / "deid_events.parquet").to_pylist()
    assert {"entity_type": "hl7v2:PID-5", "count": 1, "operator": "name"} in [
        {k: e[k] for k in ("entity_type", "count", "operator")} for e in events
    ]
    dumped = json.dumps(report.to_dict()) + json.dumps(events) + json.dumps(quarantined)
    assert "Kowalski" not in dumped and "48213377" not in dumped and "{not json" not in dumped
