"""The governance catalog: an embedded DuckDB file, ``governance/catalog.duckdb``, that answers lineage in SQL.

No server: an auditor opens the file (or a copy of it) with any DuckDB client.  The ``catalog`` stage
rebuilds it after every run from what the stages left behind (stage reports, the zones' id and provenance
columns, the quarantine index, the shard files' ``doc_id`` column and the manifest), never from document
text.  Tables:

==============  ======================================================================================
runs            one row per run ever cataloged (kept across rebuilds): spec hash, key fingerprint, counts,
                Merkle root, audit head
sources         licence, legal basis and owner of each source of the current data
input_files     every input file read: opaque id (never its path), sha256, size, ingest status and reason
documents       one row per document in the raw zone: source, patient pseudonym, input file and position,
                status per stage, quarantine reason, dedup twin, split, shard path and row
deid_events     per document and entity type: how many spans were replaced and by which operator
shard_rows      every occurrence of a document in a shard (mixing copies it, packing may split it)
quarantine      the quarantine index (reasons and positions; the quarantined copies stay owner-only)
validations     every Great Expectations suite run: stage, suite, source, outcome, failed expectations
shards          the manifest's shard files with sha256, counts and Merkle root
erasures        every erasure applied (kept across rebuilds)
==============  ======================================================================================

The raw patient key is read only to compute the keyed pseudonym in memory; it never reaches the file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from medcurate.core.context import RunContext, StageReport, load_stage_reports
from medcurate.core.keys import key_fingerprint, pseudonym
from medcurate.core.zones import Zones, make_private_dir, temporary_path, zone_parts

log = logging.getLogger(__name__)

STAGE = "catalog"
CATALOG_FILE = "catalog.duckdb"
# Per-document PHI counts, written by the deid stage beside its report (doc_id, source, entity_type, count,
# operator); the catalog's deid_events table is empty until that file exists.
DEID_EVENTS_FILE = "deid_events.parquet"
DEID_EVENTS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("entity_type", pa.string()),
        ("count", pa.int64()),
        ("operator", pa.string()),
    ]
)
# What DuckDB may hold in memory while it builds the catalog; past it, it spills to disk (see _bound_memory).
CATALOG_MEMORY_MB = 512
# Stages whose quarantine records a document can have, in pipeline order.
QUARANTINE_STAGES = ("validate_raw", "deid", "curate")
# Tables that record history (kept across rebuilds); every other table describes the data as it is now.
HISTORY_DDL = {
    "runs": """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, corpus VARCHAR, spec_config_hash VARCHAR, key_fingerprint VARCHAR,
        code_version VARCHAR, cataloged_at TIMESTAMPTZ, documents_ingested BIGINT, documents_sharded BIGINT,
        tokens BIGINT, merkle_root VARCHAR, audit_head_seq BIGINT, audit_head_hash VARCHAR)""",
    "erasures": """CREATE TABLE IF NOT EXISTS erasures (
        erasure_id VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ, kind VARCHAR, subject VARCHAR, who VARCHAR,
        documents_removed BIGINT, doc_ids_digest VARCHAR, shards_rewritten VARCHAR, merkle_root_before VARCHAR,
        merkle_root_after VARCHAR, audit_seq BIGINT, audit_hash VARCHAR, verified BOOLEAN)""",
}


def catalog_path(zones: Zones) -> Path:
    return zones.governance / CATALOG_FILE


def connect(path: Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    if read_only and not path.exists():
        raise FileNotFoundError(f"no catalog at {path}: run the pipeline (its catalog stage) first")
    return duckdb.connect(str(path), read_only=read_only)


def _parts(directory: Path) -> list[str]:
    return [str(p) for p in zone_parts(directory)]


def row_doc_ids(table: pa.Table) -> tuple[pa.Array, pa.Array]:
    """(row index, doc_id) pairs of a shard table: one per row in mode ``documents``, one per document
    fragment in mode ``packed`` (a packed row lists the documents it holds in ``doc_ids``)."""
    if "doc_id" in table.column_names:
        return pa.array(range(table.num_rows), pa.int64()), table["doc_id"].combine_chunks()
    lists = table["doc_ids"].combine_chunks()
    return pc.list_parent_indices(lists).cast(pa.int64()), pc.list_flatten(lists)


def shard_rows(shards_dir: Path, manifest: dict[str, Any]) -> pa.Table:
    """(doc_id, shard_path, shard_row, split) for every document occurrence in every shard of the manifest.

    A document can occur more than once: mixing weights copy training documents, packing splits long ones.
    """
    tables = []
    for entry in manifest.get("shards", []):
        with pa.ipc.open_stream(shards_dir / entry["path"]) as reader:
            rows, doc_ids = row_doc_ids(reader.read_all())
        tables.append(
            pa.table(
                {
                    "doc_id": doc_ids.cast(pa.string()),
                    "shard_path": pa.array([entry["path"]] * len(rows), pa.string()),
                    "shard_row": rows,
                    "split": pa.array([entry["split"]] * len(rows), pa.string()),
                }
            )
        )
    schema = pa.schema(
        [("doc_id", pa.string()), ("shard_path", pa.string()), ("shard_row", pa.int64()), ("split", pa.string())]
    )
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _load_manifest(zones: Zones) -> dict[str, Any]:
    path = zones.shards / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _raw_documents(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """``raw_docs`` (in memory): provenance columns of the raw zone, the patient key replaced by its pseudonym."""
    parts = _parts(ctx.zones.raw)
    if not parts:
        con.execute(
            "CREATE TEMP TABLE raw_docs (doc_id VARCHAR, source VARCHAR, source_kind VARCHAR, "
            "doc_type VARCHAR, source_file VARCHAR, input_sha256 VARCHAR, position VARCHAR, "
            "record_index BIGINT, patient_pseudonym VARCHAR)"
        )
        return
    keys = con.execute("SELECT DISTINCT patient_key FROM read_parquet(?) WHERE patient_key IS NOT NULL", [parts])
    pseudonyms = pa.table(
        {"k": (k := [row[0] for row in keys.fetchall()]), "p": [pseudonym(ctx.secret_key, key) for key in k]}
    )
    con.register("pseudonyms", pseudonyms)
    con.execute(
        """CREATE TEMP TABLE raw_docs AS
        SELECT r.doc_id, r.source, r.source_kind, r.doc_type, r.source_file,
               r.source_sha256 AS input_sha256, r.position, r.record_index, p.p AS patient_pseudonym
        FROM read_parquet(?) r LEFT JOIN pseudonyms p ON r.patient_key = p.k""",
        [parts],
    )
    con.unregister("pseudonyms")


def _quarantine_index(con: duckdb.DuckDBPyConnection, zones: Zones) -> None:
    parts = [p for p in _parts(zones.quarantine) if Path(p).parent.name != "files"]
    select = (
        "SELECT stage, source, source_file, source_sha256, position, doc_id, reason, detail FROM read_parquet(?)"
        if parts
        else "SELECT * FROM (VALUES (NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, "
        "NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR)) t(stage, source, source_file, source_sha256, position, "
        "doc_id, reason, detail) WHERE false"
    )
    con.execute(f"CREATE TABLE cat.quarantine AS {select}", [parts] if parts else [])


def _ids_table(con: duckdb.DuckDBPyConnection, name: str, directory: Path) -> None:
    parts = _parts(directory)
    if parts:
        con.execute(f"CREATE TEMP TABLE {name} AS SELECT DISTINCT doc_id FROM read_parquet(?)", [parts])
    else:
        con.execute(f"CREATE TEMP TABLE {name} (doc_id VARCHAR)")


def _documents(con: duckdb.DuckDBPyConnection, ctx: RunContext, manifest: dict[str, Any]) -> None:
    _raw_documents(con, ctx)
    _ids_table(con, "deid_ids", ctx.zones.deid)
    _ids_table(con, "curated_ids", ctx.zones.curated)
    con.register("shard_occurrences", shard_rows(ctx.zones.shards, manifest))
    con.execute("CREATE TABLE cat.shard_rows AS SELECT * FROM shard_occurrences ORDER BY shard_path, shard_row")
    con.execute(
        """CREATE TEMP TABLE first_occurrence AS
        SELECT doc_id, arg_min(shard_path, (shard_path, shard_row)) AS shard_path,
               arg_min(shard_row, (shard_path, shard_row)) AS shard_row, any_value(split) AS split,
               count(*) AS shard_occurrences
        FROM shard_occurrences GROUP BY doc_id"""
    )
    con.unregister("shard_occurrences")
    stage_order = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(QUARANTINE_STAGES))
    status = {stage: f"max(CASE WHEN q.stage = '{stage}' THEN 'quarantined' END)" for stage in QUARANTINE_STAGES}
    con.execute(
        f"""CREATE TEMP TABLE first_quarantine AS
        SELECT doc_id, arg_min(stage, CASE stage {stage_order} ELSE 99 END) AS quarantine_stage,
               arg_min(reason, CASE stage {stage_order} ELSE 99 END) AS quarantine_reason,
               arg_min(detail, CASE stage {stage_order} ELSE 99 END) AS quarantine_detail,
               {status["validate_raw"]} AS q_validate_raw, {status["deid"]} AS q_deid, {status["curate"]} AS q_curate
        FROM cat.quarantine q WHERE doc_id IS NOT NULL GROUP BY doc_id"""
    )
    con.execute(
        """CREATE TABLE cat.documents AS
        SELECT r.doc_id, r.source, r.source_kind, r.doc_type, r.patient_pseudonym, r.source_file, r.input_sha256,
               r.position, r.record_index,
               'ingested' AS status_ingest,
               coalesce(q.q_validate_raw, 'passed') AS status_validate_raw,
               CASE WHEN q.q_deid IS NOT NULL THEN 'quarantined' WHEN d.doc_id IS NOT NULL THEN 'passed'
                    WHEN q.q_validate_raw IS NOT NULL THEN 'skipped' ELSE 'missing' END AS status_deid,
               CASE WHEN q.q_curate IS NOT NULL THEN 'quarantined' WHEN c.doc_id IS NOT NULL THEN 'passed'
                    WHEN q.doc_id IS NOT NULL THEN 'skipped' ELSE 'missing' END AS status_curate,
               CASE WHEN s.doc_id IS NOT NULL THEN 'sharded' WHEN c.doc_id IS NOT NULL THEN 'dropped'
                    ELSE 'skipped' END AS status_shard,
               CASE WHEN s.doc_id IS NOT NULL THEN 'sharded' WHEN q.doc_id IS NOT NULL THEN 'quarantined'
                    ELSE 'dropped' END AS final_status,
               q.quarantine_stage, q.quarantine_reason,
               CASE WHEN q.quarantine_reason ILIKE '%dup%'
                    THEN nullif(regexp_extract(q.quarantine_detail, '\\b[0-9a-f]{32}\\b'), '') END AS dedup_twin,
               s.split, s.shard_path, s.shard_row, s.shard_occurrences
        FROM raw_docs r
        LEFT JOIN first_quarantine q USING (doc_id)
        LEFT JOIN deid_ids d USING (doc_id)
        LEFT JOIN curated_ids c USING (doc_id)
        LEFT JOIN first_occurrence s USING (doc_id)
        ORDER BY r.source, r.source_file, r.record_index, r.doc_id"""
    )


def _deid_events(con: duckdb.DuckDBPyConnection, zones: Zones) -> None:
    path = zones.governance / DEID_EVENTS_FILE
    if path.exists():
        con.execute(
            "CREATE TABLE cat.deid_events AS SELECT doc_id, source, entity_type, count::BIGINT AS count, operator "
            "FROM read_parquet(?) WHERE doc_id IN (SELECT doc_id FROM cat.documents)",
            [str(path)],
        )
    else:
        con.execute(
            "CREATE TABLE cat.deid_events (doc_id VARCHAR, source VARCHAR, entity_type VARCHAR, count BIGINT, "
            "operator VARCHAR)"
        )


def _insert_rows(con: duckdb.DuckDBPyConnection, table: str, ddl: str, rows: list[dict[str, Any]]) -> None:
    con.execute(ddl)
    if rows:
        con.register("new_rows", pa.Table.from_pylist(rows))
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM new_rows")
        con.unregister("new_rows")


def _stage_tables(
    con: duckdb.DuckDBPyConnection, ctx: RunContext, reports: dict[str, StageReport], manifest: dict[str, Any]
) -> None:
    _insert_rows(
        con,
        "cat.sources",
        "CREATE TABLE cat.sources (name VARCHAR PRIMARY KEY, kind VARCHAR, license VARCHAR, legal_basis VARCHAR, "
        "owner VARCHAR)",
        [
            {"name": s.name, "kind": s.kind, "license": s.license, "legal_basis": s.legal_basis, "owner": s.owner}
            for s in ctx.spec.sources
        ],
    )
    ingest = reports.get("ingest")
    _insert_rows(
        con,
        "cat.input_files",
        "CREATE TABLE cat.input_files (source VARCHAR, source_file VARCHAR, sha256 VARCHAR, size BIGINT, "
        "status VARCHAR, reason VARCHAR, documents BIGINT, run_id VARCHAR)",
        [{**f, "run_id": ingest.run_id} for f in ingest.details.get("input_files", [])] if ingest else [],
    )
    _insert_rows(
        con,
        "cat.validations",
        "CREATE TABLE cat.validations (run_id VARCHAR, stage VARCHAR, suite VARCHAR, source VARCHAR, success BOOLEAN, "
        "evaluated BIGINT, failed_expectations VARCHAR, data_docs VARCHAR)",
        [
            {
                "run_id": report.run_id,
                "stage": stage,
                "suite": v.get("suite"),
                "source": v.get("source"),
                "success": bool(v.get("success")),
                "evaluated": v.get("evaluated"),
                "failed_expectations": json.dumps(v.get("failed_expectations") or {}, sort_keys=True),
                "data_docs": report.details.get("data_docs"),
            }
            for stage, report in sorted(reports.items())
            for v in report.details.get("validations", [])
        ],
    )
    root = (manifest.get("merkle") or {}).get("root")
    _insert_rows(
        con,
        "cat.shards",
        "CREATE TABLE cat.shards (path VARCHAR PRIMARY KEY, split VARCHAR, sha256 VARCHAR, documents BIGINT, "
        "tokens BIGINT, tokens_by_source VARCHAR, run_id VARCHAR, merkle_root VARCHAR)",
        [
            {
                "path": s["path"],
                "split": s["split"],
                "sha256": s["sha256"],
                "documents": s["documents"],
                "tokens": s["tokens"],
                "tokens_by_source": json.dumps(s.get("tokens_by_source", {}), sort_keys=True),
                "run_id": manifest.get("run_id"),
                "merkle_root": root,
            }
            for s in manifest.get("shards", [])
        ],
    )


def build_catalog(ctx: RunContext, record_run: bool = True) -> Path:
    """Rebuild the catalog from the zones, keeping the history tables; written aside, then swapped in.

    ``record_run`` adds (or refreshes) the run's row; an erasure rebuilds without touching run history.
    """
    from governance import audit

    path = catalog_path(ctx.zones)
    tmp = temporary_path(path)
    tmp.unlink(missing_ok=True)
    manifest = _load_manifest(ctx.zones)
    reports = load_stage_reports(ctx.zones)
    con = duckdb.connect()
    spill = ctx.zones.root / f".catalog-spill.{ctx.run_id}.tmp"
    try:
        _bound_memory(con, spill)
        con.execute("ATTACH ? AS cat", [str(tmp)])
        for table, ddl in HISTORY_DDL.items():
            con.execute(ddl.replace(f"EXISTS {table}", f"EXISTS cat.{table}"))
        if path.exists():
            con.execute("ATTACH ? AS old (READ_ONLY)", [str(path)])
            for table in HISTORY_DDL:
                con.execute(f"INSERT INTO cat.{table} SELECT * FROM old.{table}")
            con.execute("DETACH old")
        _quarantine_index(con, ctx.zones)
        _documents(con, ctx, manifest)
        _deid_events(con, ctx.zones)
        _stage_tables(con, ctx, reports, manifest)
        if record_run:
            _record_run(con, ctx, reports, manifest, audit.head(ctx.zones.governance) or {})
        con.execute("DETACH cat")
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    os.replace(tmp, path)
    return path


def _bound_memory(con: duckdb.DuckDBPyConnection, spill: Path) -> None:
    """Cap what DuckDB holds in memory while it builds the catalog, and let it spill the rest to ``spill``
    (owner-only: it holds provenance and pseudonyms).  Its default, 80% of the machine, let the build's joins
    of a million-document run take 1.2 GB more than at 100,000 documents.  At 1M documents: 256 MB gave
    a 564 MiB peak in 11 s, 512 MB 799 MiB in 7 s, 1 GB 1,246 MiB in 6 s (no limit: 1,555 MiB in 7 s)."""
    make_private_dir(spill)
    con.execute(f"SET memory_limit = '{CATALOG_MEMORY_MB}MB'")
    con.execute("SET temp_directory = ?", [str(spill)])


def _record_run(
    con: duckdb.DuckDBPyConnection,
    ctx: RunContext,
    reports: dict[str, StageReport],
    manifest: dict[str, Any],
    head: dict[str, Any],
) -> None:
    ingest = reports.get("ingest")
    con.execute(
        """INSERT OR REPLACE INTO cat.runs VALUES (?, ?, ?, ?, ?, now(), ?, ?, ?, ?, ?, ?)""",
        [
            ctx.run_id,
            ctx.spec.name,
            ctx.spec.config_hash(),
            key_fingerprint(ctx.secret_key),
            manifest.get("code_version"),
            ingest.total_output if ingest else None,
            (manifest.get("totals") or {}).get("documents"),
            (manifest.get("totals") or {}).get("tokens"),
            (manifest.get("merkle") or {}).get("root"),
            head.get("seq"),
            head.get("hash"),
        ],
    )


def record_erasure(zones: Zones, row: dict[str, Any]) -> None:
    """Append one erasure to the (already rebuilt) catalog's history."""
    con = connect(catalog_path(zones), read_only=False)
    try:
        _insert_rows(con, "erasures", HISTORY_DDL["erasures"], [row])
    finally:
        con.close()


def run(ctx: RunContext) -> StageReport:
    """The ``catalog`` stage: rebuild ``governance/catalog.duckdb`` and count what it holds, by source.

    Every document ever ingested gets its lineage row, whatever became of it, so the stage's input and output
    are both the documents catalogued (none is removed); how many reached the shards is in ``details``.
    """
    path = build_catalog(ctx)
    report = StageReport(STAGE, ctx.run_id)
    sharded_by_source: dict[str, int] = {}
    con = connect(path)
    try:
        for source, total, sharded in con.execute(
            "SELECT source, count(*), count(*) FILTER (final_status = 'sharded') FROM documents GROUP BY source"
        ).fetchall():
            counts = report.counts(source)
            counts.input = counts.output = total
            sharded_by_source[source] = sharded
        tables = [row[0] for row in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        report.details = {
            "catalog": str(path),
            "sharded": dict(sorted(sharded_by_source.items())),
            "rows": {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables},
        }
    finally:
        con.close()
    return report
