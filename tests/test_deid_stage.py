"""The deid stage on a tiny raw zone: text replaced, keys pseudonymized, dates shifted, quarantine honoured."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydicom import examples

from medcurate.context import RunContext
from medcurate.keys import pseudonym
from medcurate.schema import (
    DEID_DOCUMENT_SCHEMA,
    QUARANTINE_SCHEMA,
    Document,
    Provenance,
    documents_to_table,
    make_doc_id,
)
from medcurate.spec import CorpusSpec, SourceSpec
from medcurate.zones import Zones, write_parquet
from pipelines.deid import stage
from pipelines.deid.config import default_config
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
        "source_uri": "file:///in/notes",
        "reason": "bad",
        "doc_id": make_doc_id("notes", "n2"),
    }
    write_parquet(
        pa.Table.from_pylist([earlier], schema=QUARANTINE_SCHEMA), zones.quarantine / "validate" / "notes.parquet"
    )
    spec = CorpusSpec(sources=(SourceSpec("notes", "notes_csv", ("x",), "synthetic", "waiver"),))
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
