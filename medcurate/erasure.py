"""Erasure: a patient withdraws consent, or a source's licence is withdrawn; their records leave every zone.

A workflow beside the runner: it works across every zone, so it drives the stages' public erase hooks
(``pipelines.shard.erase.rewrite_without``, ``pipelines.quality.dedup_index.drop_documents``,
``pipelines.deid.review_sample.drop_documents``) and records its evidence with ``governance`` (audit event,
catalog, report).

``erase(ctx, patient_key=KEY)`` / ``erase(ctx, source=NAME)``:

1. collects the documents to remove: for a patient, the raw rows whose ``patient_key`` is KEY (the key as
   the source system wrote it) and every row or catalog entry under its keyed pseudonym; for a source, all
   of its rows.  The patient's raw identifiers (the key, encounter ids, DICOM UIDs, and the full names,
   addresses, phones and emails the source records state about the patient) are collected from the raw zone
   before deletion and held only in memory, to check the published data afterwards (case-insensitively);
2. removes them from raw, deid, curated, the quarantine index, the quarantined input-file copies (a source's
   all; a patient's: every copy whose bytes name the patient, ``medcurate.quarantine_copies``), the
   de-identification review sample, per-document PHI counts and the cross-run dedup index
   (whose word hashes would otherwise keep the documents' words and make them the kept twin of a later copy);
3. has the shard stage rewrite only the shard files that held them (from their remaining rows; every other
   shard stays byte-identical), then the split's ``state.json``, the manifest and its Merkle root;
4. verifies that none of the doc_ids and none of the raw identifiers remain anywhere in the published data
   (shard tokens are decoded with the saved tokenizer), no doc_id in the dedup index and no quarantined
   file copy naming the patient (nor, for a source, any copy of it), appends an
   ``erasure`` audit event, rebuilds the catalog and records the erasure in it, and regenerates the report.

Keying note: erasure by key covers the records keyed by that key.  Notes, HL7 and DICOM key patients by
MRN, FHIR by the Patient resource id (the sample's FHIR server uses the MRN as that id); where the two
differ, erasing one person everywhere needs both keys.  Nothing here prints, logs or records the raw key:
events carry the pseudonym and counts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import shutil
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from governance import audit
from governance.catalog import DEID_EVENTS_FILE, build_catalog, catalog_path, record_erasure, shard_rows
from medcurate import quarantine_copies
from medcurate.core import storage
from medcurate.core.context import RunContext
from medcurate.core.keys import pseudonym
from medcurate.core.malloc_arenas import cap_malloc_arenas
from medcurate.core.run_lock import run_lock
from medcurate.core.sealing import seal, unseal
from medcurate.core.source_files import files_to_forget, forget_files_without_records
from medcurate.core.zones import Zones, write_parquet, zone_parts
from pipelines.deid import review_sample
from pipelines.quality import dedup_index
from pipelines.quality.raw_identifiers import identifiers as raw_identifiers
from pipelines.quality.raw_identifiers import searchable
from pipelines.shard import erase as shard_erase

log = logging.getLogger(__name__)

# Identifier columns of the raw zone that de-identification replaces: they must never reach published data.
RAW_IDENTIFIER_COLUMNS = (
    "patient_key",
    "metadata.encounter_id",
    "metadata.study_uid",
    "metadata.series_uid",
    "metadata.sop_instance_uid",
)


class ErasureRequestError(ValueError):
    """The request names no subject, two subjects, an empty key or an unknown source (message PHI-free)."""


class ErasureIncomplete(RuntimeError):
    """Verification found the erased subject's doc_ids or identifiers still in the data (message PHI-free)."""


@dataclass
class ErasureResult:
    erasure_id: str
    kind: str  # "patient" | "source"
    subject: str  # the patient's keyed pseudonym, or the source name: never the raw key
    documents_removed: int
    removed_by_zone: dict[str, int] = field(default_factory=dict)
    shards_rewritten: list[str] = field(default_factory=list)
    merkle_root_before: str | None = None
    merkle_root_after: str | None = None
    verified: bool = False
    problems: list[str] = field(default_factory=list)
    audit_seq: int | None = None
    audit_hash: str | None = None

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def _column_values(parts: list[Path], column: str, where: str, params: list[Any]) -> set[str]:
    if not parts:
        return set()
    sql = f"SELECT DISTINCT {column} FROM read_parquet(?, union_by_name = true) WHERE {where}"
    return {row[0] for row in duckdb.execute(sql, [[str(p) for p in parts], *params]).fetchall() if row[0]}


def _targets(ctx: RunContext, patient_key: str | None, source: str | None) -> tuple[set[str], set[str]]:
    """(doc_ids to remove, raw identifiers to look for afterwards): both held in memory only."""
    zones = ctx.zones
    if source is not None:
        every_part = [part for _, parts in _parts_by_zone(zones) for part in parts]
        doc_ids = _column_values(every_part, "doc_id", "source = ?", [source])
        catalog_where, catalog_param = "source = ?", source
        identifiers: set[str] = set()
    else:
        subject = pseudonym(ctx.secret_key, patient_key)
        raw = zone_parts(zones.raw)
        doc_ids = _column_values(raw, "doc_id", "patient_key = ?", [patient_key])
        published = zone_parts(zones.deid) + zone_parts(zones.curated)
        doc_ids |= _column_values(published, "doc_id", "patient_pseudonym = ?", [subject])
        identifiers = {patient_key}
        for column in RAW_IDENTIFIER_COLUMNS[1:]:
            identifiers |= _column_values(raw, column, "patient_key = ?", [patient_key])
        identifiers |= _stated_identifiers(raw, patient_key)
        identifiers = {i for i in identifiers if searchable(i)}
        catalog_where, catalog_param = "patient_pseudonym = ?", subject
    catalog = catalog_path(zones)
    if catalog.exists():  # what an interrupted erasure already removed from the zones is still listed here
        with duckdb.connect(str(catalog), read_only=True) as con:
            rows = con.execute(f"SELECT doc_id FROM documents WHERE {catalog_where}", [catalog_param]).fetchall()
        doc_ids |= {row[0] for row in rows}
    return doc_ids, identifiers


def _parts_by_zone(zones: Zones) -> list[tuple[str, list[Path]]]:
    """The Parquet parts erasure rewrites, per zone (the quarantine's index, not its copies of input files)."""
    quarantine = [p for p in zone_parts(zones.quarantine) if p.parent.name != "files"]
    return [
        ("raw", zone_parts(zones.raw)),
        ("deid", zone_parts(zones.deid)),
        ("curated", zone_parts(zones.curated)),
        ("quarantine", quarantine),
    ]


def _remove_rows(path: Path, zones: Zones, doc_ids: pa.Array, source: str | None) -> int:
    """Rewrite one Parquet part without the erased rows; returns how many rows left it."""
    table = pq.read_table(path)
    erased = pc.fill_null(pc.is_in(table["doc_id"], doc_ids), False)
    if source is not None:
        erased = pc.or_(erased, pc.equal(table["source"], source))
    removed = pc.sum(pc.cast(erased, pa.int64())).as_py() or 0
    if removed:
        kept = table.filter(pc.invert(erased))
        unseal(path)
        if kept.num_rows:
            write_parquet(kept, path, zones)
        else:
            path.unlink()
    return removed


def _remove_from_zones(ctx: RunContext, doc_ids: set[str], source: str | None, in_copies: set[str]) -> dict[str, int]:
    """``in_copies``: the erased patient's key and identifiers, whose quarantined file copies are deleted."""
    zones = ctx.zones
    ids = pa.array(sorted(doc_ids), pa.string())
    held_files = files_to_forget(zones, doc_ids, source)
    removed: dict[str, int] = {}
    for zone, parts in _parts_by_zone(zones):
        removed[zone] = sum(_remove_rows(p, zones, ids, source) for p in parts)
    removed["source_file_paths"] = forget_files_without_records(zones, held_files)
    if source is not None:
        copies = zones.quarantine / "files" / source
        removed["quarantined_files"] = sum(1 for p in copies.rglob("*") if p.is_file()) if copies.exists() else 0
        shutil.rmtree(copies, ignore_errors=True)
    else:
        held = quarantine_copies.holding(zones, ctx.spec, in_copies)
        for path in held:
            path.unlink()
        removed["quarantined_files"] = len(held)
    seal(zones.curated)
    removed["review_sample"] = review_sample.drop_documents(zones, doc_ids)
    events = zones.governance / DEID_EVENTS_FILE
    removed["deid_events"] = _remove_rows(events, zones, ids, source) if events.exists() else 0
    removed["dedup_index"] = dedup_index.drop_documents(zones.governance, doc_ids, source)
    return removed


def _stated_identifiers(raw_parts: list[Path], patient_key: str) -> set[str]:
    """Full names, addresses, phones and emails the raw records state about the patient.

    Single name parts and dates are left out on purpose: another patient's surrogate name or shifted date can
    read the same, and a verification that cries wolf would be ignored.
    """
    if not raw_parts:
        return set()
    columns = ["patient_key", "source_kind", "doc_type", "text", "metadata"]
    subject = pc.field("patient_key") == patient_key
    rows = pq.ParquetDataset(raw_parts, filters=subject).read(columns=columns)
    found: set[str] = set()
    for row in rows.to_pylist():
        for kind, value in raw_identifiers(row):
            if kind in ("phone", "email", "address") or (kind == "name" and len(value.split()) >= 2):
                found.add(value)
    return found


def _identifier_pattern(identifiers: set[str]) -> str | None:
    if not identifiers:
        return None
    alternatives = "|".join(re.escape(i) for i in sorted(identifiers, key=len, reverse=True))
    return rf"(?i)(^|[^A-Za-z0-9])({alternatives})([^A-Za-z0-9]|$)"


def verify_erased(
    ctx: RunContext, doc_ids: set[str], identifiers: set[str], source: str | None, in_copies: set[str] = frozenset()
) -> list[str]:
    """Problems found (PHI-free: zones and counts only); empty when nothing of the subject remains.

    ``in_copies``: what no quarantined input-file copy may name (the patient's key and identifiers)."""
    from tokenizers import Tokenizer

    zones = ctx.zones
    problems = []
    pattern = _identifier_pattern(identifiers)
    ids = [str(i) for i in doc_ids] or [""]
    for zone, parts in _parts_by_zone(zones):
        if not parts:
            continue
        files = [str(p) for p in parts]
        where = "list_contains(?, doc_id)" + (" OR source = ?" if source else "")
        params = [files, ids] + ([source] if source else [])
        left = duckdb.execute(f"SELECT count(*) FROM read_parquet(?, union_by_name = true) WHERE {where}", params)
        if n := left.fetchone()[0]:
            problems.append(f"{n} erased rows remain in {zone}/")
        if pattern and zone in ("deid", "curated"):
            sql = "SELECT count(*) FROM read_parquet(?, union_by_name = true) t WHERE regexp_matches(t::VARCHAR, ?)"
            if n := duckdb.execute(sql, [files, pattern]).fetchone()[0]:
                problems.append(f"{n} rows of {zone}/ contain a raw identifier of the erased patient")
    if source and (zones.quarantine / "files" / source).exists():
        problems.append(f"quarantined file copies of source {source} remain")
    if n := len(quarantine_copies.holding(zones, ctx.spec, in_copies)):
        problems.append(f"{n} quarantined file copies hold an identifier of the erased patient")
    if n := dedup_index.count_documents(zones.governance, doc_ids, source):
        problems.append(f"{n} erased rows remain in the dedup index")
    manifest_path = zones.shards / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        rows = shard_rows(zones.shards, manifest)
        if n := pc.sum(pc.cast(pc.is_in(rows["doc_id"], pa.array(ids, pa.string())), pa.int64())).as_py():
            problems.append(f"{n} erased rows remain in shards/")
        if source and source in manifest["totals"]["by_source"]:
            problems.append(f"source {source} still counted in the manifest")
        if pattern:
            regex = re.compile(pattern)
            tokenizer = Tokenizer.from_file(str(zones.shards / manifest["tokenizer"]["path"]))
            leaks = 0
            for entry in manifest["shards"]:
                with pa.ipc.open_stream(zones.shards / entry["path"]) as reader:
                    table = reader.read_all()
                for token_ids in table["input_ids"].to_pylist():
                    leaks += bool(regex.search(tokenizer.decode(token_ids, skip_special_tokens=True)))
            if leaks:
                problems.append(f"{leaks} shard rows decode to text containing a raw identifier of the erased patient")
            if regex.search(manifest_path.read_text()):
                problems.append("the manifest contains a raw identifier of the erased patient")
    return problems


def erase(ctx: RunContext, *, patient_key: str | None = None, source: str | None = None) -> ErasureResult:
    """Erase one patient (by raw key) or one source from every zone; raises ``ErasureIncomplete`` if any remains."""
    if (patient_key is None) == (source is None):
        raise ErasureRequestError("erase exactly one of: a patient key, a source name")
    if patient_key is not None and not patient_key.strip():
        raise ErasureRequestError("the patient key is empty")
    if source is not None and source not in {s.name for s in ctx.spec.sources}:
        raise ErasureRequestError(f"source '{source}' is not in the spec")
    # Before DuckDB starts its threads: their malloc arenas would otherwise reserve more address space than
    # an erasure uses, and a host that caps it (ulimit -v) would kill the erasure halfway.
    cap_malloc_arenas()
    kind = "patient" if patient_key is not None else "source"
    subject = pseudonym(ctx.secret_key, patient_key) if patient_key is not None else source
    erasure_id = datetime.now(UTC).strftime("erasure-%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
    with run_lock(ctx.zones.root, erasure_id):  # a run rewriting the zones meanwhile would undo the erasure
        return _erase_locked(ctx, erasure_id, kind, subject, patient_key, source)


def _erase_locked(
    ctx: RunContext, erasure_id: str, kind: str, subject: str, patient_key: str | None, source: str | None
) -> ErasureResult:
    doc_ids, identifiers = _targets(ctx, patient_key, source)
    log.info("%s: erasing %d documents of a %s", erasure_id, len(doc_ids), kind)
    result = ErasureResult(erasure_id, kind, subject, len(doc_ids))
    # The key is searched for in quarantined copies even when too short to search published text for: a copy
    # is never published, and deleting one that only seems to name the patient loses a replay, not data.
    in_copies = identifiers | ({patient_key} if patient_key else set())
    result.removed_by_zone = _remove_from_zones(ctx, doc_ids, source, in_copies)
    result.shards_rewritten, result.merkle_root_before, result.merkle_root_after = shard_erase.rewrite_without(
        ctx, doc_ids, erasure_id
    )
    result.problems = verify_erased(ctx, doc_ids, identifiers, source, in_copies)
    result.verified = not result.problems
    details = {k: v for k, v in result.summary().items() if k not in ("audit_seq", "audit_hash")}
    details["doc_ids_digest"] = hashlib.sha256("\n".join(sorted(doc_ids)).encode()).hexdigest()
    event = audit.append_event(ctx.zones.governance, audit.ERASURE, ctx.run_id, details)
    result.audit_seq, result.audit_hash = event["seq"], event["hash"]
    build_catalog(ctx, record_run=False)
    record_erasure(
        ctx.zones,
        {
            "erasure_id": erasure_id,
            "applied_at": datetime.fromisoformat(event["time"]),
            "kind": kind,
            "subject": subject,
            "who": event["who"],
            "documents_removed": result.documents_removed,
            "doc_ids_digest": details["doc_ids_digest"],
            "shards_rewritten": json.dumps(result.shards_rewritten),
            "merkle_root_before": result.merkle_root_before,
            "merkle_root_after": result.merkle_root_after,
            "audit_seq": result.audit_seq,
            "audit_hash": result.audit_hash,
            "verified": result.verified,
        },
    )
    from governance.report import run as write_report

    write_report(ctx)
    storage.push(ctx.zones.root)  # an object-store data root: publish the erased zones, the event, the report
    log.info(
        "%s: %d documents removed, %d shards rewritten, verified %s",
        erasure_id,
        len(doc_ids),
        len(result.shards_rewritten),
        result.verified,
    )
    if not result.verified:
        raise ErasureIncomplete(f"{erasure_id}: " + "; ".join(result.problems))
    return result


def open_for_erasure(
    spec: str | Path, data_root: str | Path | None, demo: bool, secret_key: str | None = None
) -> RunContext:
    """A context on the published data: its run id is the one that built the shards (events name that run).

    An object-store data root is pulled into its working copy here; ``erase`` pushes the result back.
    """
    from medcurate.runner import open_run

    ctx = open_run(spec, data_root=data_root, demo=demo, secret_key=secret_key)
    manifest = ctx.zones.shards / "manifest.json"
    return replace(ctx, run_id=json.loads(manifest.read_text())["run_id"]) if manifest.exists() else ctx
