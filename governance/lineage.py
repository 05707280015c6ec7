"""Lineage from the catalog: a document's path from its source file to its shard row, and a shard's contents.

Both answers come from ``governance/catalog.duckdb`` alone (ids, hashes, positions, counts, reasons), so an
auditor can ask them of a copy of the catalog without access to any zone.  The catalog names a source file by
its opaque id; its path is shown only to a user who can read the owner-only mapping in the raw zone
(``medcurate.core.source_files``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from medcurate.core.log_text import quote_name
from medcurate.core.source_files import Resolution

STAGE_COLUMNS = ("status_ingest", "status_validate_raw", "status_deid", "status_curate", "status_shard")


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def normalize_shard_path(path: str) -> str:
    """A shard path as the manifest writes it (relative to ``shards/``), from whatever the user typed."""
    parts = Path(path).parts
    if "shards" in parts:
        parts = parts[len(parts) - parts[::-1].index("shards") :]
    return Path(*parts).as_posix()


def document_lineage(con: duckdb.DuckDBPyConnection, doc_id: str) -> dict[str, Any] | None:
    """Everything the catalog knows about one document, or None when it has no such document."""
    docs = _rows(
        con,
        """SELECT d.*, f.size AS input_size, f.status AS input_status, s.license, s.legal_basis, s.owner
        FROM documents d LEFT JOIN input_files f ON f.source_file = d.source_file AND f.sha256 = d.input_sha256
        LEFT JOIN sources s ON s.name = d.source WHERE d.doc_id = ?""",
        [doc_id],
    )
    if not docs:
        return None
    doc = docs[0]
    doc["deid_events"] = _rows(
        con,
        "SELECT entity_type, count, operator FROM deid_events WHERE doc_id = ? ORDER BY entity_type",
        [doc_id],
    )
    doc["quarantine"] = _rows(
        con, "SELECT stage, reason, detail FROM quarantine WHERE doc_id = ? ORDER BY stage", [doc_id]
    )
    return doc


def doc_id_at(con: duckdb.DuckDBPyConnection, shard_path: str, row: int) -> str | None:
    found = con.execute(
        "SELECT doc_id FROM documents WHERE shard_path = ? AND shard_row = ?", [normalize_shard_path(shard_path), row]
    ).fetchone()
    return found[0] if found else None


def shard_contents(con: duckdb.DuckDBPyConnection, shard_path: str) -> dict[str, Any] | None:
    """A shard's digest and what it holds by source, licence and legal basis."""
    path = normalize_shard_path(shard_path)
    shard = _rows(con, "SELECT * FROM shards WHERE path = ?", [path])
    if not shard:
        return None
    by_source = _rows(
        con,
        """SELECT d.source, s.kind, s.license, s.legal_basis, s.owner, count(DISTINCT r.doc_id) AS documents,
                  count(*) AS occurrences, count(DISTINCT d.patient_pseudonym) AS patients
        FROM shard_rows r JOIN documents d USING (doc_id) JOIN sources s ON s.name = d.source
        WHERE r.shard_path = ? GROUP BY ALL ORDER BY d.source""",
        [path],
    )
    tokens = json.loads(shard[0]["tokens_by_source"] or "{}")
    for row in by_source:
        row["tokens"] = tokens.get(row["source"], 0)
    return {**shard[0], "by_source": by_source}


def format_document(doc: dict[str, Any], source_path: Resolution) -> str:
    """The document's lineage as text; ``source_path`` is its source file's path, or why it is not shown."""
    path = quote_name(source_path.path) if source_path.path is not None else f"not shown: {source_path.problem}"
    status = ", ".join(f"{c.removeprefix('status_')}: {doc[c]}" for c in STAGE_COLUMNS)
    entities = ", ".join(f"{e['entity_type']} {e['count']} ({e['operator']})" for e in doc["deid_events"])
    lines = [
        f"document {doc['doc_id']}  ({doc['source']}, {doc['source_kind']}, {doc['doc_type']})",
        f"  source file  {doc['source_file']}",
        f"               path {path}",
        f"               sha256 {doc['input_sha256']}, {doc['input_size']} bytes, ingest {doc['input_status']}",
        f"               at {doc['position']} (record {doc['record_index']})",
        f"  licence      {doc['license']}; legal basis {doc['legal_basis']}; owner {doc['owner']}",
        f"  patient      {doc['patient_pseudonym'] or '-'} (keyed pseudonym)",
        f"  stages       {status}",
        f"  deid         {entities or 'no per-document entity counts recorded'}",
    ]
    for q in doc["quarantine"]:
        lines.append(f"  quarantined  at {q['stage']}: {q['reason']} ({q['detail']})")
    if doc["dedup_twin"]:
        lines.append(f"  duplicate of {doc['dedup_twin']}")
    if doc["shard_path"]:
        lines.append(
            f"  shard        shards/{doc['shard_path']} row {doc['shard_row']} "
            f"(split {doc['split']}; {doc['shard_occurrences']} occurrence(s) in shards)"
        )
    else:
        lines.append(f"  shard        not in any shard ({doc['final_status']})")
    return "\n".join(lines)


def format_shard(shard: dict[str, Any]) -> str:
    lines = [
        f"shard shards/{shard['path']}  (split {shard['split']}, {shard['documents']} documents, "
        f"{shard['tokens']} tokens)",
        f"  sha256 {shard['sha256']}; set Merkle root {shard['merkle_root']}",
        "  source           kind        documents  tokens     patients  licence; legal basis; owner",
    ]
    for s in shard["by_source"]:
        lines.append(
            f"  {s['source']:<16} {s['kind']:<11} {s['documents']:>9}  {s['tokens']:>9}  {s['patients']:>8}  "
            f"{s['license']}; {s['legal_basis']}; {s['owner']}"
        )
    return "\n".join(lines)
