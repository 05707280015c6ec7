"""The ingest stage's own duties, whatever the parser: provenance, supersession, quarantine, permissions, and
running each source as its own unit (what one Airflow task per source does)."""

from __future__ import annotations

import gzip
import os
import signal
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from ray import cloudpickle

from governance import audit
from medcurate.core.schema import RAW_DOCUMENT_SCHEMA, make_doc_id
from medcurate.core.source_files import resolve
from medcurate.core.spec import SpecError
from medcurate.core.zones import read_zone
from medcurate.runner import open_run, run_stage
from pipelines.ingest.notes_csv import NotesCsvParser
from pipelines.ingest.registry import PARSERS
from pipelines.ingest.stage import IngestIncomplete, NoInputFiles, ingest_unit, merge

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
    assert corrected["text"] == "Corrected version."
    assert resolve(ctx.zones, "notes", corrected["source_file"]).path == str((tmp_path / "in" / "b.csv").resolve())
    first = rows[make_doc_id("notes", "10-DS-1")]
    assert first["position"] == "line 2" and first["patient_key"] == "101" and len(first["source_sha256"]) == 64
    assert first["license"] == "synthetic" and first["legal_basis"] == "waiver" and first["run_id"] == ctx.run_id
    counts = report.sources["notes"]
    assert (counts.input, counts.output, dict(counts.removed)) == (4, 3, {"superseded": 1})


def test_files_parsed_on_ray_actors_give_what_the_driver_alone_gives(corpus: Path, tmp_path: Path):
    """With a Ray runtime up (the session's), ingest parses a kind's files on actors; two actors and the driver
    alone must write the same parts and report the same supersession, quarantine and counts."""

    def ingest(workers: int) -> tuple:
        spec = tmp_path / f"spec-{workers}.yaml"
        spec.write_text(corpus.read_text() + f"parallel: {{workers: {workers}}}\n")
        ctx = open_run(spec, data_root=tmp_path / f"data-{workers}", run_id="run-ingest")
        report = run_stage(ctx, "ingest").to_dict()
        parts = {p.name: p.read_bytes() for p in sorted((ctx.zones.raw / "notes").glob("*.parquet"))}
        index = pq.read_table(ctx.zones.quarantine / "ingest" / "notes.parquet")
        report["details"].pop("seconds", None)
        return parts, report["sources"], report["details"]["input_files"], index.to_pylist()

    alone, on_actors = ingest(1), ingest(2)
    assert on_actors == alone
    parts, sources, files, quarantined = alone
    assert sorted(parts) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert sources["notes"]["removed"] == {"superseded": 1}
    assert [f["status"] for f in files] == ["ingested", "ingested", "ingested", "quarantined"]
    assert [r["reason"] for r in quarantined] == ["truncated_gzip"]


_DRIVER = os.getpid()
KILL_MARKER = "KILL-THIS-WORKER"


class _KilledByMarker(NotesCsvParser):
    """The notes parser, except that its process is killed (SIGKILL, as the kernel's out-of-memory killer does)
    when a file holds the marker: what a crash in native code or a file that exhausts memory does to an actor.
    Never in the test's own process."""

    def parse_file(self, path: Path):
        if KILL_MARKER in path.read_text(errors="replace"):
            if os.getpid() == _DRIVER:
                raise AssertionError("this file was meant to be parsed on an actor")
            os.kill(os.getpid(), signal.SIGKILL)
        yield from super().parse_file(path)


def test_a_file_whose_actor_dies_is_quarantined_and_the_files_queued_behind_it_are_parsed(
    corpus: Path, tmp_path: Path, monkeypatch
):
    """The actor parsing "ab.csv" is killed.  That file is quarantined as a parser error; "c.csv.gz", queued on
    the same actor, runs again on its replacement; everything else is what a run without "ab.csv" gives."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    monkeypatch.setitem(PARSERS, "notes_csv", _KilledByMarker)

    def ingest(name: str) -> tuple:
        spec = tmp_path / f"spec-{name}.yaml"
        spec.write_text(corpus.read_text() + "parallel: {workers: 2}\n")
        ctx = open_run(spec, data_root=tmp_path / f"data-{name}", run_id="run-ingest")
        report = run_stage(ctx, "ingest").to_dict()
        docs = read_zone(ctx.zones.raw / "notes", RAW_DOCUMENT_SCHEMA).sort_by("doc_id")
        files = [
            (resolve(ctx.zones, "notes", f["source_file"]).path, f["status"], f.get("reason"))
            for f in report["details"]["input_files"]
        ]
        quarantined = pq.read_table(ctx.zones.quarantine / "ingest" / "notes.parquet").to_pylist()
        temporary = [p.name for p in (ctx.zones.raw / "notes").iterdir() if p.name.startswith(".")]
        return docs.drop_columns(["source_file", "run_id"]), files, quarantined, temporary

    docs, files, _, _ = ingest("without")
    (tmp_path / "in" / "ab.csv").write_text(HEADER + f"10-XX-1,104,204,DS,1,2180-03-01 10:00:00,,{KILL_MARKER}\n")
    killed_docs, killed_files, quarantined, temporary = ingest("killed")
    assert killed_docs.equals(docs) and not temporary
    died = str((tmp_path / "in" / "ab.csv").resolve())
    assert [f for f in killed_files if f[0] != died] == files
    assert (died, "quarantined", "parser_error") in killed_files
    assert [r["reason"] for r in quarantined] == ["parser_error", "truncated_gzip"]
    assert quarantined[0]["detail"] == "WorkerDied"


def test_a_truncated_file_is_quarantined_whole_and_the_run_goes_on(corpus: Path, tmp_path: Path):
    ctx = open_run(corpus, data_root=tmp_path / "data")
    report = run_stage(ctx, "ingest")
    bad = [f for f in report.details["input_files"] if f["status"] == "quarantined"]
    named = [(Path(resolve(ctx.zones, "notes", f["source_file"]).path).name, f["reason"]) for f in bad]
    assert named == [("d.csv.gz", "truncated_gzip")]
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


def _two_source_spec(tmp_path: Path) -> Path:
    """Two notes sources, each with one good and one truncated file: both get a quarantine record."""
    good = gzip.compress((HEADER + "10-RR-9,103,203,RR,1,2180-02-01 09:00:00,,CXR: no acute process.\n").encode())
    for name in ("north", "south"):
        incoming = tmp_path / name
        incoming.mkdir()
        (incoming / "a.csv.gz").write_bytes(good)
        (incoming / "b.csv.gz").write_bytes(good[: len(good) // 2])
    spec = tmp_path / "two.yaml"
    spec.write_text(
        "sources:\n"
        + "".join(
            f"  - {{name: {name}, kind: notes_csv, paths: ['{name}/*.csv.gz'], license: synthetic, "
            "legal_basis: waiver}\n"
            for name in ("north", "south")
        )
    )
    return spec


def _quarantine_rows(ctx) -> list[tuple[str, str]]:
    parts = sorted((ctx.zones.quarantine / "ingest").glob("*.parquet"))
    return sorted((r["source"], r["reason"]) for p in parts for r in pq.read_table(p).to_pylist())


def test_an_ingest_unit_run_twice_gives_the_same_raw_parts_and_merged_report(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MEDCURATE_PSEUDONYM_KEY", "test-key-0123456789abcdef")
    ctx = open_run(_two_source_spec(tmp_path), data_root=tmp_path / "data")
    for name in ("north", "south"):
        ingest_unit(ctx, name)
    first_parts = {p.name: pq.read_table(p) for p in sorted((ctx.zones.raw / "north").glob("*.parquet"))}
    first = merge(ctx).to_dict()
    ingest_unit(ctx, "north")
    second_parts = {p.name: pq.read_table(p) for p in sorted((ctx.zones.raw / "north").glob("*.parquet"))}
    second = merge(ctx).to_dict()
    assert first_parts.keys() == second_parts.keys() and first_parts
    assert all(first_parts[name].equals(second_parts[name]) for name in first_parts)
    assert (first["sources"], first["details"]) == (second["sources"], second["details"])
    assert [f["status"] for f in second["details"]["input_files"]] == ["ingested", "quarantined"] * 2
    assert second["details"]["quarantined_files"] == 2
    # Re-running north replaced north's quarantine record and left south's alone: one each, no duplicate.
    assert _quarantine_rows(ctx) == [("north", "truncated_gzip"), ("south", "truncated_gzip")]


def test_merge_names_the_sources_not_ingested_yet(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MEDCURATE_PSEUDONYM_KEY", "test-key-0123456789abcdef")
    ctx = open_run(_two_source_spec(tmp_path), data_root=tmp_path / "data")
    ingest_unit(ctx, "south")
    with pytest.raises(IngestIncomplete) as failure:
        merge(ctx)
    assert failure.value.missing == ["north"] and "north" in str(failure.value)


def test_the_whole_stage_goes_through_the_units_and_audits_each(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MEDCURATE_PSEUDONYM_KEY", "test-key-0123456789abcdef")
    ctx = open_run(_two_source_spec(tmp_path), data_root=tmp_path / "data")
    report = run_stage(ctx, "ingest")
    assert sorted(report.sources) == ["north", "south"] and report.total_output == 2
    assert sorted(p.stem for p in (ctx.stage_dir / "ingest").glob("*.json")) == ["north", "south"]
    events = [(e["type"], e["details"].get("unit")) for e in audit.read_events(ctx.zones.governance)]
    assert events == [
        (audit.STAGE_START, None),
        (audit.UNIT_START, "north"),
        (audit.UNIT_END, "north"),
        (audit.UNIT_START, "south"),
        (audit.UNIT_END, "south"),
        (audit.STAGE_END, None),
    ]


def test_a_unit_with_a_wrong_parser_option_fails_audited_without_touching_other_sources(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MEDCURATE_PSEUDONYM_KEY", "test-key-0123456789abcdef")
    spec = _two_source_spec(tmp_path)
    ctx = open_run(spec, data_root=tmp_path / "data")
    ingest_unit(ctx, "south")
    spec.write_text(spec.read_text().replace("name: north,", "name: north, options: {colums: {}},"))
    ctx = open_run(spec, data_root=tmp_path / "data")
    with pytest.raises(SpecError):
        ingest_unit(ctx, "north")
    failed = audit.read_events(ctx.zones.governance)[-1]
    assert (failed["type"], failed["details"]) == (
        audit.UNIT_FAILED,
        {"stage": "ingest", "unit": "north", "error": "SpecError"},
    )
    assert _quarantine_rows(ctx) == [("south", "truncated_gzip")]


def test_a_source_whose_globs_match_nothing_fails_the_run_unless_optional(tmp_path: Path, monkeypatch, capsys):
    from medcurate.cli import EXIT_FAILED, main

    monkeypatch.setenv("MEDCURATE_PSEUDONYM_KEY", "test-key-0123456789abcdef")
    spec = _write_spec(tmp_path)  # in/ does not exist: a wrong path, or a feed not delivered yet
    ctx = open_run(spec, data_root=tmp_path / "data")
    with pytest.raises(NoInputFiles, match='source "notes": no input file matches'):
        ingest_unit(ctx, "notes")
    assert main(["run", str(spec), "--data-root", str(tmp_path / "cli")]) == EXIT_FAILED
    assert 'source "notes": no input file matches' in capsys.readouterr().err

    spec.write_text(spec.read_text().replace("legal_basis: waiver}", "legal_basis: waiver, optional: true}"))
    report = ingest_unit(open_run(spec, data_root=tmp_path / "data"), "notes")
    assert report.details["input_files"] == [] and report.counts("notes").output == 0
