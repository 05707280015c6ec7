"""Erasure: a patient withdraws consent, or a source's licence is withdrawn; their records leave every zone.

``erase(ctx, patient_key=KEY)`` / ``erase(ctx, source=NAME)``:

1. collects the documents to remove: for a patient, the raw rows whose ``patient_key`` is KEY (the key as
   the source system wrote it) and every row or catalog entry under its keyed pseudonym; for a source, all
   of its rows.  The patient's raw identifiers (the key, encounter ids, DICOM UIDs, and the full names,
   addresses, phones and emails the source records state about the patient) are collected from the raw zone
   before deletion and held only in memory, to check the published data afterwards (case-insensitively);
2. removes them from raw, deid, curated, the quarantine index (and, for a source, its quarantined file
   copies), the de-identification review sample, per-document PHI counts and the cross-run dedup index
   (whose word hashes would otherwise keep the documents' words and make them the kept twin of a later copy);
3. rewrites only the shard files that held them (with the shard writer, from their remaining rows; every
   other shard stays byte-identical), then the split's ``state.json``, the manifest and its Merkle root;
4. verifies that none of the doc_ids and none of the raw identifiers remain anywhere in the published data
   (shard tokens are decoded with the saved tokenizer) nor any doc_id in the dedup index, appends an
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
from governance.access import seal, unseal
from governance.catalog import DEID_EVENTS_FILE, build_catalog, catalog_path, record_erasure, row_doc_ids, shard_rows
from medcurate import storage
from medcurate.context import RunContext, load_stage_reports
from medcurate.keys import pseudonym
from medcurate.zones import Zones, write_parquet
from pipelines.quality import dedup_index
from pipelines.quality.raw_identifiers import identifiers as raw_identifiers
from pipelines.shard.hf_layout import ShardFile, SplitWriter
from pipelines.shard.trainer_files import write_trainer_files

log = logging.getLogger(__name__)

# Identifier columns of the raw zone that de-identification replaces: they must never reach published data.
RAW_IDENTIFIER_COLUMNS = (
    "patient_key",
    "metadata.encounter_id",
    "metadata.study_uid",
    "metadata.series_uid",
    "metadata.sop_instance_uid",
)
MIN_IDENTIFIER_CHARS = 4  # shorter values (a 3-digit id) would match unrelated numbers in de-identified text
REVIEW_SAMPLE = "deid_review_sample.jsonl"


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


def _parts(directory: Path) -> list[Path]:
    return [p for p in sorted(directory.rglob("*.parquet")) if not p.name.startswith(".")] if directory.exists() else []


def _column_values(parts: list[Path], column: str, where: str, params: list[Any]) -> set[str]:
    if not parts:
        return set()
    sql = f"SELECT DISTINCT {column} FROM read_parquet(?, union_by_name = true) WHERE {where}"
    return {row[0] for row in duckdb.execute(sql, [[str(p) for p in parts], *params]).fetchall() if row[0]}


def _targets(ctx: RunContext, patient_key: str | None, source: str | None) -> tuple[set[str], set[str]]:
    """(doc_ids to remove, raw identifiers to look for afterwards): both held in memory only."""
    zones = ctx.zones
    zone_parts = _parts(zones.raw) + _parts(zones.deid) + _parts(zones.curated) + _quarantine_parts(zones)
    if source is not None:
        doc_ids = _column_values(zone_parts, "doc_id", "source = ?", [source])
        catalog_where, catalog_param = "source = ?", source
        identifiers: set[str] = set()
    else:
        subject = pseudonym(ctx.secret_key, patient_key)
        raw = _parts(zones.raw)
        doc_ids = _column_values(raw, "doc_id", "patient_key = ?", [patient_key])
        published = _parts(zones.deid) + _parts(zones.curated)
        doc_ids |= _column_values(published, "doc_id", "patient_pseudonym = ?", [subject])
        identifiers = {patient_key}
        for column in RAW_IDENTIFIER_COLUMNS[1:]:
            identifiers |= _column_values(raw, column, "patient_key = ?", [patient_key])
        identifiers |= _stated_identifiers(raw, patient_key)
        identifiers = {i for i in identifiers if len(i) >= MIN_IDENTIFIER_CHARS}
        catalog_where, catalog_param = "patient_pseudonym = ?", subject
    catalog = catalog_path(zones)
    if catalog.exists():  # what an interrupted erasure already removed from the zones is still listed here
        with duckdb.connect(str(catalog), read_only=True) as con:
            rows = con.execute(f"SELECT doc_id FROM documents WHERE {catalog_where}", [catalog_param]).fetchall()
        doc_ids |= {row[0] for row in rows}
    return doc_ids, identifiers


def _quarantine_parts(zones: Zones) -> list[Path]:
    return [p for p in _parts(zones.quarantine) if p.parent.name != "files"]


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


def _remove_from_zones(ctx: RunContext, doc_ids: set[str], source: str | None) -> dict[str, int]:
    zones = ctx.zones
    ids = pa.array(sorted(doc_ids), pa.string())
    removed: dict[str, int] = {}
    for zone, parts in (
        ("raw", _parts(zones.raw)),
        ("deid", _parts(zones.deid)),
        ("curated", _parts(zones.curated)),
        ("quarantine", _quarantine_parts(zones)),
    ):
        removed[zone] = sum(_remove_rows(p, zones, ids, source) for p in parts)
    if source is not None:
        copies = zones.quarantine / "files" / source
        removed["quarantined_files"] = sum(1 for p in copies.rglob("*") if p.is_file()) if copies.exists() else 0
        shutil.rmtree(copies, ignore_errors=True)
    seal(zones.curated)
    removed["review_sample"] = _filter_review_sample(zones, doc_ids)
    events = zones.governance / DEID_EVENTS_FILE
    removed["deid_events"] = _remove_rows(events, zones, ids, source) if events.exists() else 0
    removed["dedup_index"] = dedup_index.drop_documents(zones.governance, doc_ids, source)
    return removed


def _filter_review_sample(zones: Zones, doc_ids: set[str]) -> int:
    path = zones.governance / REVIEW_SAMPLE
    if not path.exists():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("doc_id") not in doc_ids]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return len(lines) - len(kept)


def _erased_rows(table: pa.Table, doc_ids: pa.Array) -> pa.Array:
    """Per shard row: whether it holds an erased document (a packed row goes whole: its neighbours' fragments
    in that row go with it, which the catalog then shows as fewer occurrences)."""
    rows, ids = row_doc_ids(table)
    hit = pc.filter(rows, pc.fill_null(pc.is_in(ids, doc_ids), False))
    return pc.is_in(pa.array(range(table.num_rows), pa.int64()), hit)


def _manifest_shards(shards: Path, manifest: dict[str, Any]) -> dict[str, ShardFile]:
    """The manifest's shard entries as the shard writer's records (row ranges recomputed per split)."""
    files: dict[str, ShardFile] = {}
    next_row: dict[str, int] = {}
    for e in sorted(manifest["shards"], key=lambda e: e["path"]):
        start = next_row.get(e["split"], 0)
        index = int(re.search(r"data-(\d+)-of-", e["path"]).group(1))
        files[e["path"]] = ShardFile(
            shards / e["path"],
            e["split"],
            index,
            e["sha256"],
            start,
            e["rows"],
            e["documents"],
            e["tokens"],
            e["documents_by_source"],
            e["tokens_by_source"],
        )
        next_row[e["split"]] = start + e["rows"]
    return files


def _rewrite_shards(ctx: RunContext, doc_ids: set[str], erasure_id: str) -> tuple[list[str], str | None, str | None]:
    """Rewrite the shards holding erased rows with the shard writer, then the split metadata and the manifest."""
    from pipelines.shard.manifest import build_manifest, write_manifest
    from pipelines.shard.stage import MODES, curated_files, input_records
    from pipelines.shard.tokenizer import TokenizerInfo

    shards = ctx.zones.shards
    manifest_path = shards / "manifest.json"
    if not manifest_path.exists():
        return [], None, None
    manifest = json.loads(manifest_path.read_text())
    before = manifest["merkle"]["root"]
    ids = pa.array(sorted(doc_ids), pa.string())
    occurrences = shard_rows(shards, manifest)
    affected = sorted(set(occurrences.filter(pc.is_in(occurrences["doc_id"], ids))["shard_path"].to_pylist()))
    if not affected:
        return [], before, before
    files = _manifest_shards(shards, manifest)
    tally = MODES[manifest["mode"]].tally
    scratch = shards / f".erasure-{erasure_id}"
    for relative in affected:
        path = shards / relative
        with pa.ipc.open_stream(path) as reader:
            table = reader.read_all()
        info = json.loads((path.parent / "dataset_info.json").read_text())
        terms = {"license": info.get("license", ""), "citation": info.get("citation", "")}
        # One shard in, one shard out: a target size no row set can reach keeps the writer from cutting it.
        writer = SplitWriter(
            scratch / relative,
            files[relative].split,
            table.schema.remove_metadata(),
            1 << 62,
            info.get("description", ""),
            tally,
            **terms,
        )
        writer.write(table.filter(pc.invert(_erased_rows(table, ids))))
        (written,) = writer.close()
        unseal(path)
        written.path.replace(path)
        old = files[relative]
        files[relative] = replace(written, path=path, index=old.index, rows_start=old.rows_start)
    for split_dir in sorted({(shards / r).parent for r in affected}):
        split_files = sorted((f for f in files.values() if f.path.parent == split_dir), key=lambda f: f.index)
        info = json.loads((split_dir / "dataset_info.json").read_text())
        terms = {"license": info.get("license", ""), "citation": info.get("citation", "")}
        with pa.ipc.open_stream(split_files[0].path) as reader:
            schema = reader.schema.remove_metadata()
        # The shard writer's own metadata step (in scratch: a writer clears its directory), so state.json's
        # fingerprint follows the new shard digests; then the two files replace the split's.
        meta = scratch / "metadata" / split_dir.name
        SplitWriter(meta, split_files[0].split, schema, 1, info.get("description", ""), tally, **terms)._write_metadata(
            split_files
        )
        for name in ("dataset_info.json", "state.json"):
            unseal(split_dir / name)
            (meta / name).replace(split_dir / name)
    shutil.rmtree(scratch, ignore_errors=True)
    tok = manifest["tokenizer"]
    tokenizer = TokenizerInfo(
        shards / tok["path"], tok["sha256"], tok["vocab_size"], tok["bos_id"], tok["eos_id"], tok.get("pad_id")
    )
    rebuilt = build_manifest(
        spec=ctx.spec,
        run_id=manifest["run_id"],
        root=shards,
        shards=list(files.values()),
        tokenizer=tokenizer,
        token_dtype=manifest["token_dtype"],
        inputs=input_records(ctx.zones.curated, curated_files(ctx.zones.curated)),
    )
    after = rebuilt["merkle"]["root"]
    erasures = manifest.get("erasures", []) + [
        {"erasure_id": erasure_id, "shards_rewritten": affected, "merkle_root_before": before}
    ]
    # Only what the erasure changed is replaced; the spec hash and run id still name the build.
    manifest.update({k: rebuilt[k] for k in ("shards", "totals", "merkle", "inputs")}, erasures=erasures)
    unseal(manifest_path)
    write_manifest(manifest, manifest_path)
    # The card and Croissant state counts and erasures: rewritten from the new manifest (by rename).
    write_trainer_files(ctx, shards, manifest, load_stage_reports(ctx.zones)["shard"])
    seal(shards)
    return affected, before, after


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


def verify_erased(ctx: RunContext, doc_ids: set[str], identifiers: set[str], source: str | None) -> list[str]:
    """Problems found (PHI-free: zones and counts only); empty when nothing of the subject remains."""
    from tokenizers import Tokenizer

    zones = ctx.zones
    problems = []
    pattern = _identifier_pattern(identifiers)
    ids = [str(i) for i in doc_ids] or [""]
    for zone, parts in (
        ("raw", _parts(zones.raw)),
        ("deid", _parts(zones.deid)),
        ("curated", _parts(zones.curated)),
        ("quarantine", _quarantine_parts(zones)),
    ):
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
    kind = "patient" if patient_key is not None else "source"
    subject = pseudonym(ctx.secret_key, patient_key) if patient_key is not None else source
    erasure_id = datetime.now(UTC).strftime("erasure-%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
    doc_ids, identifiers = _targets(ctx, patient_key, source)
    log.info("%s: erasing %d documents of a %s", erasure_id, len(doc_ids), kind)
    result = ErasureResult(erasure_id, kind, subject, len(doc_ids))
    result.removed_by_zone = _remove_from_zones(ctx, doc_ids, source)
    result.shards_rewritten, result.merkle_root_before, result.merkle_root_after = _rewrite_shards(
        ctx, doc_ids, erasure_id
    )
    result.problems = verify_erased(ctx, doc_ids, identifiers, source)
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
