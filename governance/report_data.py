"""What the report states, gathered as one JSON-able dict (``governance/report.json``); rendering is elsewhere.

Two kinds of figure, kept apart on purpose:

* **as the data stands now**: the funnel, PHI replaced, quarantine, shards and tokens come from the catalog,
  the quarantine index and the shard manifest, which every erasure rewrites before it rebuilds the report.
  So after ``medcurate erase`` the report shows what is left, and names the erasures applied;
* **as the run saw it**: the stage table, the curation steps, the residual-PHI gate and validation outcomes
  come from the stage reports of the last run; erasures do not edit history.

Everything is counts, reason codes, hashes and paths; nothing here reads a document, so nothing can leak PHI.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from governance import audit
from governance.catalog import catalog_path, connect
from governance.report_content import by_code, define, deid_method, glossary, quarantine_definition
from medcurate.core.context import RunContext, StageReport, load_stage_reports
from medcurate.core.names import STAGE_NAMES
from medcurate.core.zones import PHI_ZONES

FUNNEL = ("ingested", "de-identified", "validated", "filtered", "deduplicated", "sharded")
# A document the curate stage dropped did not reach the funnel column its reason belongs to (the GX "deid"
# suite and the residual-PHI gate come before "validated", the filters before "filtered", deduplication and
# decontamination before "deduplicated").  Families as in the glossary; an unknown code counts as dropped first.
CURATE_DROP_COLUMN = {
    "expect_": "validated",
    "residual_phi:": "validated",
    "near_empty_after_deid": "filtered",
    "too_short": "filtered",
    "too_long": "filtered",
    "symbol_ratio": "filtered",
    "digit_ratio": "filtered",
    "non_letter_ratio": "filtered",
    "repeated_lines": "filtered",
    "language_not_allowed": "filtered",
    "exact_duplicate": "deduplicated",
    "near_duplicate": "deduplicated",
    "copy_forward": "deduplicated",
    "decontaminated:": "deduplicated",
}
# DICOM de-identification is audited per element and action (DICOM_X, DICOM_Z, ...) in the catalog, and
# stated as one figure per document kind in the report, like the deid stage's own summary.
DICOM_EVENT_PREFIX = "DICOM_"
DICOM_ELEMENTS = "DICOM_ELEMENTS"
# The Great Expectations project folder inside governance/ (``gx.get_context(project_root_dir=governance)``).
GX_PROJECT_DIR = "gx"
ZONE_READERS = {
    "raw": "pipeline operators only (owner-only files): contains PHI",
    "quarantine": "pipeline operators only (owner-only files): may contain PHI",
    "deid": "project members: de-identified",
    "curated": "project members: de-identified, read-only once published",
    "shards": "trainers: de-identified, tokenized, read-only once published",
    "governance": "auditors and project members: counts, codes, hashes, no PHI",
}


def _quarantine_summary(ctx: RunContext) -> dict[str, Any]:
    """The quarantine index, counted once: a row is a whole input file (no position in it) or one record."""
    by_stage_reason: Counter[tuple[str, str]] = Counter()
    by_source: Counter[str] = Counter()
    files = 0
    for path in sorted(ctx.zones.quarantine.glob("*/*.parquet")):
        table = pq.read_table(path, columns=["stage", "source", "reason", "position"])
        columns = (table[c].to_pylist() for c in ("stage", "source", "reason", "position"))
        for stage, source, reason, position in zip(*columns, strict=True):
            by_stage_reason[(stage, reason)] += 1
            by_source[source] += 1
            files += position is None
    total = sum(by_source.values())
    return {
        "definition": quarantine_definition(),
        "total": total,
        "files": files,
        "records": total - files,
        "by_source": dict(sorted(by_source.items())),
        "by_stage_and_reason": [{"stage": s, "reason": r, "count": n} for (s, r), n in sorted(by_stage_reason.items())],
    }


def _curate_steps(curate: StageReport | None) -> list[dict[str, Any]]:
    """The curate stage's step tallies (``details["curation_steps"]``: ``{"step", "input", "kept", "dropped"}``,
    counts by source), or [] when the stage did not report steps; malformed entries are skipped, not guessed."""
    steps = (curate.details.get("curation_steps") if curate else None) or []
    return (
        [s for s in steps if isinstance(s, dict) and isinstance(s.get("kept"), dict) and isinstance(s.get("step"), str)]
        if isinstance(steps, list)
        else []
    )


def _residual_phi(curate: StageReport | None) -> dict[str, Any] | None:
    """The residual-PHI gate's outcome: the stage's own summary if it gives one, else the gate step's tally."""
    if curate is None:
        return None
    for key in ("residual_phi", "residual_phi_gate"):
        if isinstance(curate.details.get(key), dict):
            return curate.details[key]
    return next((s for s in _curate_steps(curate) if "phi" in s["step"].lower()), None)


def _reached(status_deid: str, status_curate: str, status_shard: str, reason: str | None) -> list[str]:
    """The funnel columns one document (a catalog row) reached."""
    reached: list[str] = ["ingested"]
    if status_deid != "passed":
        return reached
    reached.append("de-identified")
    if status_curate == "passed":
        reached.extend(FUNNEL[FUNNEL.index("validated") : FUNNEL.index("sharded")])
    else:
        stop = by_code(CURATE_DROP_COLUMN, reason) or "validated"
        reached.extend(FUNNEL[FUNNEL.index("validated") : FUNNEL.index(stop)])
    if status_shard == "sharded":
        reached.append("sharded")
    return reached


def _funnel(ctx: RunContext, con: Any) -> list[dict[str, Any]]:
    """Per source: documents that reached each funnel step, from the catalog (the data as it stands now)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    rows = con.execute(
        "SELECT source, status_deid, status_curate, status_shard, quarantine_reason FROM documents"
    ).fetchall()
    for source, status_deid, status_curate, status_shard, reason in rows:
        counts[source].update(_reached(status_deid, status_curate, status_shard, reason))
    return [{"source": s.name, **{c: counts[s.name][c] for c in FUNNEL}} for s in ctx.spec.sources]


def _phi(con: Any) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """PHI replaced by type and by source, from the catalog's per-document events (what erasure prunes).

    Structured-field rules (``fhir:...``, ``hl7v2:...``, ``csv:...``) are operations on fields, counted in the
    catalog for lineage; the report counts entities found in text and DICOM elements, as the deid stage does.
    """
    by_source: dict[str, Counter[str]] = defaultdict(Counter)
    for source, entity_type, count in con.execute(
        "SELECT source, entity_type, sum(count) FROM deid_events WHERE entity_type NOT LIKE '%:%' GROUP BY ALL"
    ).fetchall():
        label = DICOM_ELEMENTS if entity_type.startswith(DICOM_EVENT_PREFIX) else entity_type
        by_source[source][label] += int(count)
    by_type: Counter[str] = Counter()
    for counts in by_source.values():
        by_type.update(counts)
    return dict(sorted(by_type.items())), {s: dict(sorted(c.items())) for s, c in sorted(by_source.items())}


def _erasures(con: Any) -> list[dict[str, Any]]:
    cursor = con.execute(
        "SELECT erasure_id, applied_at, kind, subject, documents_removed, shards_rewritten, merkle_root_after, "
        "verified, audit_seq FROM erasures ORDER BY applied_at"
    )
    names = [d[0] for d in cursor.description]
    return [
        {**row, "shards_rewritten": json.loads(row["shards_rewritten"] or "[]")}
        for row in (dict(zip(names, r, strict=True)) for r in cursor.fetchall())
    ]


def _reason_codes(reports: dict[str, StageReport], quarantine: dict[str, Any], steps: list[dict[str, Any]]) -> set[str]:
    codes = {q["reason"] for q in quarantine["by_stage_and_reason"]}
    for report in reports.values():
        codes.update(report.removed_by_reason)
    for step in steps:
        for dropped in (step.get("dropped") or {}).values():
            codes.update(dropped)
    return codes


def _data_docs(reports: dict[str, StageReport]) -> str | None:
    """The Data Docs index as a path relative to the report, so the link works in a copy of governance/.

    A stage records the absolute path of its working copy, which differs between machines (an Airflow worker,
    an object-store checkout); the part from the GX project folder (``governance/gx``) on is the same.
    """
    index = next(
        (reports[s].details["data_docs"] for s in ("validate_shards", "curate", "validate_raw") if s in reports),
        None,
    )
    if not index:
        return None
    parts = Path(index).parts
    start = len(parts) - 1 - parts[::-1].index(GX_PROJECT_DIR)
    return Path(*parts[start:]).as_posix()


def build_report(ctx: RunContext) -> dict[str, Any]:
    loaded = load_stage_reports(ctx.zones)
    reports = {name: loaded[name] for name in STAGE_NAMES if name in loaded and name != "report"}
    manifest_path = ctx.zones.shards / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    totals = (manifest or {}).get("totals", {})
    curate = reports.get("curate")
    steps = _curate_steps(curate)
    quarantine = _quarantine_summary(ctx)
    with connect(catalog_path(ctx.zones)) as con:
        funnel = _funnel(ctx, con)
        phi_by_type, phi_by_source = _phi(con)
        erasures = _erasures(con)
    validations = [
        {"stage": stage, **v}
        for stage in ("validate_raw", "curate", "validate_shards")
        if stage in reports
        for v in reports[stage].details.get("validations", [])
    ]
    codes = _reason_codes(reports, quarantine, steps)
    return {
        "corpus": ctx.spec.name,
        "run_id": ctx.run_id,
        "generated_at": datetime.now(UTC).isoformat(),
        "spec_config_hash": ctx.spec.config_hash(),
        "sources": [
            {"name": s.name, "kind": s.kind, "license": s.license, "legal_basis": s.legal_basis, "owner": s.owner}
            for s in ctx.spec.sources
        ],
        "stages": {
            name: {
                "input": r.total_input,
                "output": r.total_output,
                "removed_by_reason": dict(sorted(r.removed_by_reason.items())),
                "seconds": r.details.get("seconds"),
                "by_source": r.to_dict()["sources"],
            }
            for name, r in reports.items()
        },
        "funnel": funnel,
        "documents_in_shards": totals.get("documents", 0),
        "curation": {
            "steps": steps,
            "residual_phi": _residual_phi(curate),
            **{key: curate.details[key] for key in ("dedup", "decontamination") if curate and key in curate.details},
        },
        "tokens": {
            "total": totals.get("tokens", 0),
            "by_source": {s: v["tokens"] for s, v in sorted(totals.get("by_source", {}).items())},
            "by_split": {s: v["tokens"] for s, v in sorted(totals.get("by_split", {}).items())},
        },
        "shard_warnings": reports["shard"].details.get("warnings", []) if "shard" in reports else [],
        "erasures": erasures,
        "audit_head": audit.head(ctx.zones.governance),
        "input_files": {
            "total": len(reports["ingest"].details.get("input_files", [])) if "ingest" in reports else 0,
            "quarantined": reports["ingest"].details.get("quarantined_files", 0) if "ingest" in reports else 0,
        },
        "quarantine": quarantine,
        "phi_by_type": phi_by_type,
        "phi_by_source": phi_by_source,
        "deid_method": deid_method(),
        "validations": validations,
        "data_docs": _data_docs(reports),
        "manifest": manifest,
        "glossary": glossary(),
        "reason_codes": {code: define(code) for code in sorted(codes)},
        "zones": dict(ZONE_READERS),
        "phi_zones": list(PHI_ZONES),
    }
