"""The catalog, lineage, audit trail and access rules of the session's sample run."""

from __future__ import annotations

import csv
import gzip
import io
import stat
from pathlib import Path

import pyarrow as pa
import pytest

from governance import audit, lineage
from governance.catalog import catalog_path, connect
from medcurate.cli import main
from medcurate.core.hashing import sha256_file
from medcurate.core.log_text import quote_name
from medcurate.core.names import STAGE_NAMES
from medcurate.core.schema import make_doc_id
from medcurate.core.source_files import resolve
from medcurate.runner import DEMO_KEY_FILE

pytestmark = pytest.mark.slow


def _record_at_line(path: Path, line: int) -> dict[str, str]:
    """The CSV record that starts on physical ``line`` (1-based), read with the file's header."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        lines = fh.read().splitlines(keepends=True)
    header = next(csv.reader([lines[0]]))
    return dict(zip(header, next(csv.reader(io.StringIO("".join(lines[line - 1 :])))), strict=False))


def test_catalog_has_every_table_and_document(sample_run):
    with connect(catalog_path(sample_run.zones)) as con:
        tables = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert tables >= {
            "runs",
            "sources",
            "input_files",
            "documents",
            "deid_events",
            "validations",
            "shards",
            "shard_rows",
            "erasures",
            "quarantine",
        }
        sharded = con.execute("SELECT count(*) FROM documents WHERE final_status = 'sharded'").fetchone()[0]
        run = con.execute("SELECT run_id, key_fingerprint, audit_head_hash FROM runs").fetchall()
        columns = [row[0] for row in con.execute("DESCRIBE documents").fetchall()]
    assert sharded == len(set(_shard_doc_ids(sample_run.zones.shards)))
    assert run[0][0] == sample_run.ctx.run_id and run[0][1] and run[0][2]
    assert "patient_key" not in columns and "text" not in columns


def _shard_doc_ids(shards: Path) -> list[str]:
    ids = []
    for arrow in sorted(shards.glob("*/data-*.arrow")):
        with pa.ipc.open_stream(arrow) as reader:
            ids.extend(reader.read_all()["doc_id"].to_pylist())
    return ids


def test_lineage_from_a_shard_row_back_to_the_source_file_and_line(sample_run, capsys):
    """Take a notes row out of a shard file, follow it to its CSV file and line, and find the note there."""
    shards = sample_run.zones.shards
    with connect(catalog_path(sample_run.zones)) as con:
        shard_path, row = con.execute(
            "SELECT shard_path, shard_row FROM documents WHERE source = 'notes' AND shard_path IS NOT NULL LIMIT 1"
        ).fetchone()
        doc_id = lineage.doc_id_at(con, str(shards / shard_path), row)
        doc = lineage.document_lineage(con, doc_id)
    with pa.ipc.open_stream(shards / shard_path) as reader:
        assert reader.read_all()["doc_id"][row].as_py() == doc_id
    source_file = Path(resolve(sample_run.zones, "notes", doc["source_file"]).path)
    assert sha256_file(source_file) == doc["input_sha256"]
    line = int(doc["position"].removeprefix("line "))
    record = _record_at_line(source_file, line)
    assert make_doc_id("notes", record["note_id"]) == doc_id
    assert (
        main(
            [
                "lineage",
                "--shard",
                str(shards / shard_path),
                "--row",
                str(row),
                "--data-root",
                str(sample_run.zones.root),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    path_line = f"path {quote_name(str(source_file))}"
    for expected in (doc_id, doc["source_file"], path_line, doc["input_sha256"], doc["position"], "curate: passed"):
        assert expected in out


def test_quarantined_document_lineage_names_stage_and_reason(sample_run, capsys):
    with connect(catalog_path(sample_run.zones)) as con:
        doc_id, reason = con.execute(
            "SELECT doc_id, quarantine_reason FROM documents WHERE final_status = 'quarantined' LIMIT 1"
        ).fetchone()
    assert main(["lineage", doc_id, "--data-root", str(sample_run.zones.root)]) == 0
    out = capsys.readouterr().out
    assert reason in out and "not in any shard" in out


def test_shard_lineage_lists_sources_with_licence_and_legal_basis(sample_run, capsys):
    spec = sample_run.ctx.spec
    shard = next(sample_run.zones.shards.glob("train/data-*.arrow"))
    assert main(["lineage", "--shard", str(shard), "--data-root", str(sample_run.zones.root)]) == 0
    out = capsys.readouterr().out
    with connect(catalog_path(sample_run.zones)) as con:
        contents = lineage.shard_contents(con, str(shard))
    sources = {row["source"] for row in contents["by_source"]}
    assert sources
    for name in sources:
        assert name in out and spec.source(name).license in out and spec.source(name).legal_basis in out
    assert sum(row["documents"] for row in contents["by_source"]) == contents["documents"]


def test_audit_log_records_the_run_and_verifies(sample_run):
    governance = sample_run.zones.governance
    assert audit.verify(governance).ok
    events = [e for e in audit.read_events(governance) if e["run_id"] == sample_run.ctx.run_id]
    types = [e["type"] for e in events]
    assert types[0] == audit.RUN_START and types[-1] == audit.RUN_END
    assert events[-1]["details"]["status"] == "succeeded"
    ended = [e["details"]["stage"] for e in events if e["type"] == audit.STAGE_END]
    assert ended == list(STAGE_NAMES)
    published = {e["details"]["zone"] for e in events if e["type"] == audit.PUBLICATION}
    assert published == {"curated", "shards"}


def test_published_zones_are_read_only(sample_run):
    for zone in (sample_run.zones.curated, sample_run.zones.shards):
        files = [p for p in zone.rglob("*") if p.is_file()]
        assert files
        for path in files:
            assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), path


def test_the_key_appears_in_no_file_under_the_data_root(sample_run):
    key_file = sample_run.zones.root / DEMO_KEY_FILE
    key = key_file.read_bytes().strip()
    holding = [
        p.relative_to(sample_run.zones.root)
        for p in sample_run.zones.root.rglob("*")
        if p.is_file() and p != key_file and key in p.read_bytes()
    ]
    assert not holding


def test_the_catalog_build_caps_duckdbs_memory_and_leaves_no_spill_behind(sample_run, tmp_path):
    """DuckDB's default limit is 80% of the machine: a million-document catalog took 1.5 GB.  The build caps it
    and spills to an owner-only folder beside the zones, gone once the catalog is written."""
    import duckdb

    from governance.catalog import CATALOG_MEMORY_MB, _bound_memory

    con = duckdb.connect()
    _bound_memory(con, tmp_path / "spill")
    limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    number, unit = limit.split()
    assert unit == "MiB" and float(number) == pytest.approx(CATALOG_MEMORY_MB * 1e6 / 2**20, abs=0.1)  # MB: 10^6
    assert con.execute("SELECT current_setting('temp_directory')").fetchone()[0] == str(tmp_path / "spill")
    assert stat.S_IMODE((tmp_path / "spill").stat().st_mode) == 0o700
    con.close()
    assert not list(sample_run.zones.root.glob(".catalog-spill*"))
