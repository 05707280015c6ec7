"""The ingest stage's own duties, whatever the parser: provenance, supersession, quarantine, permissions."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medcurate.runner import open_run, run_stage
from medcurate.schema import RAW_DOCUMENT_SCHEMA, make_doc_id
from medcurate.zones import read_zone

HEADER = "note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text\n"


def _write_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "sources:\n"
        "  - {name: notes, kind: notes_csv, paths: ['in/*.csv', 'in/*.csv.gz'], license: synthetic, "
        "legal_basis: waiver}\n"
    )
    return spec


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("MEDCURATE_PSEUDONYM_KEY", "test-key-0123456789abcdef")
    incoming = tmp_path / "in"
    incoming.mkdir()
    (incoming / "a.csv").write_text(
        HEADER
        + '10-DS-1,101,201,DS,1,2180-01-02 10:00:00,,"Pt seen for chest pain.\nStable, discharged home."\n'
        + "10-DS-2,102,202,DS,1,2180-01-03 10:00:00,,First version of this note.\n"
    )
    # b.csv sorts after a.csv and re-issues note 10-DS-2: the later version wins.
    (incoming / "b.csv").write_text(HEADER + "10-DS-2,102,202,DS,2,2180-01-04 10:00:00,,Corrected version.\n")
    good = gzip.compress((HEADER + "10-RR-9,103,203,RR,1,2180-02-01 09:00:00,,CXR: no acute process.\n").encode())
    (incoming / "c.csv.gz").write_bytes(good)
    (incoming / "d.csv.gz").write_bytes(good[: len(good) // 2])  # a transfer cut short
    return _write_spec(tmp_path)


def test_ingest_writes_provenance_and_keeps_the_latest_version(corpus: Path, tmp_path: Path):
    ctx = open_run(corpus, data_root=tmp_path / "data")
    report = run_stage(ctx, "ingest")
    table = read_zone(ctx.zones.raw / "notes", RAW_DOCUMENT_SCHEMA)
    rows = {r["doc_id"]: r for r in table.to_pylist()}
    assert set(rows) == {make_doc_id("notes", k) for k in ("10-DS-1", "10-DS-2", "10-RR-9")}
    corrected = rows[make_doc_id("notes", "10-DS-2")]
    assert corrected["text"] == "Corrected version." and corrected["source_uri"].endswith("/in/b.csv")
    first = rows[make_doc_id("notes", "10-DS-1")]
    assert first["position"] == "line 2" and first["patient_key"] == "101" and len(first["source_sha256"]) == 64
    assert first["license"] == "synthetic" and first["legal_basis"] == "waiver" and first["run_id"] == ctx.run_id
    counts = report.sources["notes"]
    assert (counts.input, counts.output, dict(counts.removed)) == (4, 3, {"superseded": 1})


def test_a_truncated_file_is_quarantined_whole_and_the_run_goes_on(corpus: Path, tmp_path: Path):
    ctx = open_run(corpus, data_root=tmp_path / "data")
    report = run_stage(ctx, "ingest")
    bad = [f for f in report.details["input_files"] if f["status"] == "quarantined"]
    assert [(Path(f["uri"]).name, f["reason"]) for f in bad] == [("d.csv.gz", "truncated_gzip")]
    index = pq.read_table(ctx.zones.quarantine / "ingest" / "notes.parquet").to_pylist()
    assert [(r["reason"], r["stage"]) for r in index] == [("truncated_gzip", "ingest")]
    copies = list((ctx.zones.quarantine / "files" / "notes").iterdir())
    assert len(copies) == 1 and copies[0].read_bytes() == (tmp_path / "in" / "d.csv.gz").read_bytes()
    assert not any(p.name.startswith(".") for p in (ctx.zones.raw / "notes").iterdir()), "no temp part left"


def test_raw_zone_is_owner_only_and_rerun_is_idempotent(corpus: Path, tmp_path: Path):
    ctx = open_run(corpus, data_root=tmp_path / "data")
    run_stage(ctx, "ingest")
    first = read_zone(ctx.zones.raw, RAW_DOCUMENT_SCHEMA).sort_by("doc_id")
    run_stage(ctx, "ingest")
    second = read_zone(ctx.zones.raw, RAW_DOCUMENT_SCHEMA).sort_by("doc_id")
    assert first.equals(second)
    for path in [ctx.zones.raw, *ctx.zones.raw.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path
