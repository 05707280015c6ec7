"""The run report: ``governance/report.json`` for machines and ``governance/report.html`` for people.

It is organised as a datasheet for datasets (Gebru et al.): motivation, composition, collection,
preprocessing and de-identification, uses, distribution, maintenance, so an auditor finds each question
where that framework puts it.

Everything in it comes from the stage reports, the quarantine index and the shard manifest, which hold
counts, reason codes, hashes and paths only; the report never reads a document, so it cannot leak PHI.
The HTML is self-contained (inline CSS and SVG, no scripts, fonts or CDNs) so it can be archived as evidence
and opened offline.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq

from governance import audit
from governance.catalog import catalog_path, connect
from medcurate.core.context import RunContext, StageReport, load_stage_reports
from medcurate.core.names import STAGE_NAMES
from medcurate.core.zones import PHI_ZONES

STAGE = "report"
# The datasheet's funnel.  The curate stage reports its steps in ``details["curation_steps"]``; each step is
# placed in a funnel column below (decontamination is the last removal before publication, so it closes the
# "deduplicated" column).  Without steps, curate's output stands for all three curate columns.
FUNNEL = ("ingested", "de-identified", "validated", "filtered", "deduplicated", "sharded")
CURATE_STEP_COLUMNS = {
    "residual_phi_gate": "validated",
    "mojibake_repair": "filtered",
    "boilerplate": "filtered",
    "near_empty": "filtered",
    "length": "filtered",
    "character_ratios": "filtered",
    "repeated_lines": "filtered",
    "language": "filtered",
    "exact_dedup": "deduplicated",
    "near_dedup": "deduplicated",
    "copy_forward": "deduplicated",
    "decontamination": "deduplicated",
}
ZONE_READERS = {
    "raw": "pipeline operators only (owner-only files): contains PHI",
    "quarantine": "pipeline operators only (owner-only files): may contain PHI",
    "deid": "project members: de-identified",
    "curated": "project members: de-identified, read-only once published",
    "shards": "trainers: de-identified, tokenized, read-only once published",
    "governance": "auditors and project members: counts, codes, hashes, no PHI",
}


def _quarantine_summary(ctx: RunContext) -> dict[str, Any]:
    by_stage_reason: Counter[tuple[str, str]] = Counter()
    by_source: Counter[str] = Counter()
    for path in sorted(ctx.zones.quarantine.glob("*/*.parquet")):
        table = pq.read_table(path, columns=["stage", "source", "reason"])
        for stage, source, reason in zip(*(table[c].to_pylist() for c in ("stage", "source", "reason")), strict=True):
            by_stage_reason[(stage, reason)] += 1
            by_source[source] += 1
    return {
        "total": sum(by_source.values()),
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


def _funnel(reports: dict[str, StageReport], sources: list[str]) -> list[dict[str, Any]]:
    """Per source: documents left after each funnel step (None when the step did not run for the source).

    A curate step lands in a column by its name; the last step of a column gives its count, and a column no
    step reported carries the previous count forward.  Without steps, curate's output fills all three.
    """
    steps = _curate_steps(reports.get("curate"))
    by_column: dict[str, dict[str, int]] = {}
    for step in steps:
        column = CURATE_STEP_COLUMNS.get(step["step"])
        if column:
            by_column[column] = step["kept"]

    def output(stage: str, source: str) -> int | None:
        report = reports.get(stage)
        return report.sources[source].output if report and source in report.sources else None

    rows = []
    for source in sources:
        curated = output("curate", source)
        row: dict[str, Any] = {"source": source, "ingested": output("ingest", source)}
        row["de-identified"] = output("deid", source)
        previous = steps[0]["input"].get(source, 0) if steps and isinstance(steps[0].get("input"), dict) else curated
        for column in ("validated", "filtered", "deduplicated"):
            row[column] = by_column[column].get(source, 0) if column in by_column else previous
            previous = row[column]
        row["sharded"] = output("shard", source)
        rows.append(row)
    return rows


def _residual_phi(curate: StageReport | None) -> dict[str, Any] | None:
    """The residual-PHI gate's outcome: the stage's own summary if it gives one, else the gate step's tally."""
    if curate is None:
        return None
    for key in ("residual_phi", "residual_phi_gate"):
        if isinstance(curate.details.get(key), dict):
            return curate.details[key]
    return next((s for s in _curate_steps(curate) if "phi" in s["step"].lower()), None)


def _catalog_erasures(ctx: RunContext) -> list[dict[str, Any]]:
    path = catalog_path(ctx.zones)
    if not path.exists():
        return []
    with connect(path) as con:
        cursor = con.execute(
            "SELECT erasure_id, applied_at, kind, subject, documents_removed, shards_rewritten, merkle_root_after, "
            "verified, audit_seq FROM erasures ORDER BY applied_at"
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def build_report(ctx: RunContext) -> dict[str, Any]:
    loaded = load_stage_reports(ctx.zones)
    reports = {name: loaded[name] for name in STAGE_NAMES if name in loaded}
    sources = [s.name for s in ctx.spec.sources]
    manifest_path = ctx.zones.shards / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    deid = reports.get("deid")
    validations = []
    for stage in ("validate_raw", "curate", "validate_shards"):
        if stage in reports:
            validations.extend({"stage": stage, **v} for v in reports[stage].details.get("validations", []))
    data_docs = next(
        (
            reports[s].details["data_docs"]
            for s in ("validate_shards", "curate", "validate_raw")
            if s in reports and reports[s].details.get("data_docs")
        ),
        None,
    )
    return {
        "corpus": ctx.spec.name,
        "run_id": ctx.run_id,
        "generated_at": datetime.now(UTC).isoformat(),
        "spec_config_hash": ctx.spec.config_hash(),
        "sources": [
            {
                "name": s.name,
                "kind": s.kind,
                "license": s.license,
                "legal_basis": s.legal_basis,
                "owner": s.owner,
            }
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
            if name != STAGE
        },
        "funnel": _funnel(reports, sources),
        "curation": {
            "steps": _curate_steps(reports.get("curate")),
            "residual_phi": _residual_phi(reports.get("curate")),
            **{
                key: reports["curate"].details[key]
                for key in ("dedup", "decontamination")
                if "curate" in reports and key in reports["curate"].details
            },
        },
        "tokens": {
            "by_source": (reports["shard"].details.get("tokens_by_source", {}) if "shard" in reports else {}),
            "by_split": (reports["shard"].details.get("tokens_by_split", {}) if "shard" in reports else {}),
        },
        "shard_warnings": reports["shard"].details.get("warnings", []) if "shard" in reports else [],
        "erasures": _catalog_erasures(ctx),
        "audit_head": audit.head(ctx.zones.governance),
        "input_files": {
            "total": len(reports["ingest"].details.get("input_files", [])) if "ingest" in reports else 0,
            "quarantined": reports["ingest"].details.get("quarantined_files", 0) if "ingest" in reports else 0,
        },
        "quarantine": _quarantine_summary(ctx),
        "phi_by_type": deid.details.get("phi_by_type", {}) if deid else {},
        "phi_by_source": deid.details.get("phi_by_source", {}) if deid else {},
        "validations": validations,
        "data_docs": data_docs,
        "manifest": manifest,
        "zones": dict(ZONE_READERS),
        "phi_zones": list(PHI_ZONES),
    }


# --- HTML -------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d2733;padding:0 1rem}h1{margin-bottom:.2rem}h2{border-bottom:2px solid #dfe6ee;padding-bottom:.2rem;
margin-top:2rem}table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #dfe6ee;padding:.25rem
.6rem;text-align:left}th{background:#f3f6f9}td.num{text-align:right}.meta{color:#5a6b7d}
.ok{color:#1b7f3b;font-weight:600}.bad{color:#b42318;font-weight:600}code{font-size:.85em;word-break:break-all}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #dfe6ee;border-radius:8px;padding:.6rem 1rem;
min-width:150px}.card b{display:block;font-size:1.5rem}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _cell(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="num">{value:,}</td>'
    return f"<td>{_e(value)}</td>"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bar_chart_svg(title: str, items: list[tuple[str, float]], color: str = "#3b6ea8", chart_id: str = "") -> str:
    """A horizontal bar chart as inline SVG (no script, no external resource)."""
    if not items:
        return f'<p class="meta">{_e(title)}: nothing to show</p>'
    width, bar_h, label_w = 640, 22, 180
    height = bar_h * len(items) + 30
    peak = max(v for _, v in items) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" class="chart" '
        f'id="{_e(chart_id)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<text x="0" y="14" font-size="13" font-weight="600">{_e(title)}</text>',
    ]
    for i, (label, value) in enumerate(items):
        y = 24 + i * bar_h
        w = (width - label_w - 70) * value / peak
        parts.append(f'<text x="0" y="{y + 14}" font-size="12">{_e(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{bar_h - 6}" fill="{color}"/>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 14}" font-size="12">{value:,.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _dropped_reasons(step: dict[str, Any]) -> str:
    """A curate step's drops summed over sources, as "reason: count" pairs."""
    total: Counter[str] = Counter()
    for counts in (step.get("dropped") or {}).values():
        total.update(counts)
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(total.items()))


def _kv_table(mapping: dict[str, Any]) -> str:
    """A stage's free-form facts (gate outcome, dedup counts) as a two-column table, nested values as JSON."""
    rows = [[k, v if isinstance(v, int | float | str) else json.dumps(v, sort_keys=True)] for k, v in mapping.items()]
    return _table(["fact", "value"], rows)


def _section(section_id: str, title: str, *parts: str) -> str:
    return f'<section id="{section_id}"><h2>{_e(title)}</h2>{"".join(parts)}</section>'


def _funnel_totals(report: dict[str, Any]) -> list[tuple[str, float]]:
    totals = []
    for column in FUNNEL:
        values = [row[column] for row in report["funnel"] if row[column] is not None]
        if values:
            totals.append((column, sum(values)))
    return totals


def render_html(report: dict[str, Any]) -> str:
    stages = report["stages"]
    manifest = report.get("manifest") or {}
    totals = manifest.get("totals", {})
    head = report.get("audit_head") or {}
    cards = [
        ("documents ingested", sum(row["ingested"] or 0 for row in report["funnel"])),
        ("documents in shards", stages.get("shard", {}).get("output", 0)),
        ("tokens", totals.get("tokens", 0)),
        ("PHI entities replaced", sum(report["phi_by_type"].values())),
        ("quarantined", report["quarantine"]["total"] + report["input_files"]["quarantined"]),
        ("erasures applied", len(report.get("erasures") or [])),
    ]
    curation = report.get("curation") or {}
    residual = curation.get("residual_phi")
    sections = [
        f"<h1>Datasheet: {_e(report['corpus'])}</h1>",
        f'<p class="meta">run <code>{_e(report["run_id"])}</code> · generated {_e(report["generated_at"])} · '
        f"spec hash <code>{_e(report['spec_config_hash'][:16])}</code> · audit head "
        f"<code>{_e((head.get('hash') or 'none')[:16])}</code></p>",
        '<section id="at-a-glance"><div class="cards">'
        + "".join(f"<div class='card'><b>{v:,}</b>{_e(k)}</div>" for k, v in cards)
        + "</div></section>",
        _section(
            "motivation",
            "Motivation",
            f"<p>{_e(report['corpus'])} is a training corpus of de-identified clinical and biomedical text, built by "
            "medcurate so that language models can learn from medical records and literature without exposing "
            "the patients in them. It was created by the owners of the sources below, under the licences and legal "
            "bases they state.</p>",
        ),
        _section(
            "composition",
            "Composition",
            '<div id="sources"><h3>Sources</h3>'
            + _table(
                ["source", "kind", "licence", "legal basis", "owner"],
                [[s["name"], s["kind"], s["license"], s["legal_basis"], s["owner"]] for s in report["sources"]],
            )
            + "</div><h3>Tokens by source and split</h3>"
            + _table(["source", "tokens"], sorted(report["tokens"]["by_source"].items()))
            + _table(["split", "tokens"], sorted(report["tokens"]["by_split"].items()))
            + bar_chart_svg(
                "Tokens by source",
                sorted(report["tokens"]["by_source"].items(), key=lambda kv: -kv[1]),
                color="#3b8a6e",
                chart_id="chart-tokens",
            ),
        ),
        _section(
            "collection",
            "Collection",
            f"<p>{report['input_files']['total']} input files read, {report['input_files']['quarantined']} of them "
            "quarantined whole (unreadable), each recorded with its sha256 in the catalog.</p>",
            '<div id="funnel"><h3>Funnel by source</h3>'
            + _table(
                ["source", *FUNNEL],
                [[r["source"], *(r[c] if r[c] is not None else "–" for c in FUNNEL)] for r in report["funnel"]],
            )
            + bar_chart_svg("Documents after each step", _funnel_totals(report), chart_id="chart-funnel")
            + "</div>",
            '<div id="stages"><h3>Stages</h3>'
            + _table(
                ["stage", "input", "output", "removed (reason: count)", "seconds"],
                [
                    [
                        name,
                        s["input"],
                        s["output"],
                        ", ".join(f"{k}: {v}" for k, v in s["removed_by_reason"].items()) or "–",
                        s["seconds"],
                    ]
                    for name, s in stages.items()
                ],
            )
            + "</div>",
        ),
        _section(
            "preprocessing",
            "Preprocessing and de-identification",
            '<div id="phi"><h3>PHI replaced</h3>'
            + _table(["PHI type", "replaced"], sorted(report["phi_by_type"].items()))
            + bar_chart_svg(
                "PHI replaced by type",
                sorted(report["phi_by_type"].items(), key=lambda kv: -kv[1]),
                color="#a8553b",
                chart_id="chart-phi",
            )
            + _table(
                ["source", "PHI type", "replaced"],
                [
                    [source, label, n]
                    for source, counts in sorted(report["phi_by_source"].items())
                    for label, n in sorted(counts.items())
                ],
            )
            + "</div>",
            '<div id="residual-phi"><h3>Residual-PHI gate</h3>'
            + (_kv_table(residual) if isinstance(residual, dict) else "<p>Not reported by this run's curate stage.</p>")
            + "</div>",
            '<div id="validation"><h3>Validation (Great Expectations)</h3>'
            + _table(
                ["stage", "suite", "source", "outcome", "failed expectations"],
                [
                    [
                        v.get("stage"),
                        v.get("suite"),
                        v.get("source", "all"),
                        "passed" if v.get("success") else "FAILED",
                        ", ".join(f"{k}: {n}" for k, n in (v.get("failed_expectations") or {}).items()) or "–",
                    ]
                    for v in report["validations"]
                ],
            )
            + (
                f'<p>Data Docs: <a href="{_e(report["data_docs"])}">{_e(report["data_docs"])}</a></p>'
                if report.get("data_docs")
                else ""
            )
            + "</div>",
            '<div id="quarantine"><h3>Quarantine and drop reasons</h3>'
            + f"<p>{report['input_files']['quarantined']} of {report['input_files']['total']} input files and "
            f"{report['quarantine']['total']} records quarantined (raw copies are kept in the owner-only "
            "quarantine zone).</p>"
            + _table(
                ["stage", "reason", "count"],
                [[q["stage"], q["reason"], q["count"]] for q in report["quarantine"]["by_stage_and_reason"]],
            )
            + "</div>",
            '<div id="dedup"><h3>Curation steps: filters, deduplication, decontamination</h3>'
            + (
                _table(
                    ["step", "in", "kept", "dropped (reason: count)"],
                    [
                        [
                            step["step"],
                            sum((step.get("input") or {}).values()),
                            sum(step["kept"].values()),
                            _dropped_reasons(step) or "–",
                        ]
                        for step in curation.get("steps") or []
                    ],
                )
                if curation.get("steps")
                else "<p>This run's curate stage reported no separate steps.</p>"
            )
            + "".join(
                f"<h4>{_e(key)}</h4>" + _kv_table(curation[key])
                for key in ("dedup", "decontamination")
                if isinstance(curation.get(key), dict)
            )
            + "</div>",
        ),
        _section(
            "uses",
            "Uses",
            "<p>Intended: pre-training and fine-tuning language models on de-identified medical text, and evaluating "
            "them. Not intended: re-identifying anyone, linking records back to patients, or clinical decisions "
            "about an individual. Each source's licence and legal basis (above) bound what its documents may be used "
            "for; <code>medcurate lineage --shard PATH</code> lists them for any shard.</p>",
        ),
        _section(
            "distribution",
            "Distribution",
            '<div id="shards"><h3>Shards</h3>'
            + "".join(f'<p class="warning">Warning: {_e(w)}</p>' for w in report["shard_warnings"])
            + (
                f"<p>Merkle root <code>{_e((manifest.get('merkle') or {}).get('root'))}</code> · tokenizer sha256 "
                f"<code>{_e((manifest.get('tokenizer') or {}).get('sha256'))}</code></p>"
                + _table(
                    ["shard", "split", "documents", "tokens", "sha256"],
                    [
                        [s["path"], s["split"], s["documents"], s["tokens"], s["sha256"]]
                        for s in manifest.get("shards", [])
                    ],
                )
                if manifest
                else "<p>No shards were written.</p>"
            )
            + "</div>",
            '<div id="access"><h3>Access</h3>'
            + _table(["zone", "who may read it"], list(report["zones"].items()))
            + "<p>The pseudonymization key is never written to any output; only its fingerprint is audited.</p></div>",
        ),
        _section(
            "maintenance",
            "Maintenance",
            '<div id="erasures"><h3>Erasures applied</h3>'
            + (
                _table(
                    ["erasure", "applied", "kind", "subject", "documents", "shards rewritten", "verified"],
                    [
                        [
                            e["erasure_id"],
                            e["applied_at"],
                            e["kind"],
                            e["subject"],
                            e["documents_removed"],
                            ", ".join(json.loads(e["shards_rewritten"] or "[]")) or "–",
                            "yes" if e["verified"] else "NO",
                        ]
                        for e in report.get("erasures") or []
                    ],
                )
                if report.get("erasures")
                else "<p>None.</p>"
            )
            + "</div>",
            '<div id="audit"><h3>Audit log</h3>'
            + (
                f"<p>Hash-chained audit log <code>governance/audit.log.jsonl</code>: {head['events']} events, head "
                f"(seq {head['seq']}) <code>{_e(head['hash'])}</code>. Check it with "
                "<code>medcurate audit verify --expect-head HASH</code>.</p>"
                if head
                else "<p>No audit events recorded.</p>"
            )
            + "</div>",
        ),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>medcurate datasheet {_e(report['run_id'])}</title><style>{_CSS}</style></head><body>"
        + "".join(sections)
        + "</body></html>"
    )


def run(ctx: RunContext) -> StageReport:
    report = build_report(ctx)
    out = ctx.zones.governance
    json_path = out / "report.json"
    html_path = out / "report.html"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    html_path.write_text(render_html(report))
    stage_report = StageReport(STAGE, ctx.run_id)
    # The report accounts for the published documents: in = out = what the shards hold, by source.
    for source, counts in report["stages"].get("shard", {}).get("by_source", {}).items():
        stage_report.counts(source).input = stage_report.counts(source).output = counts["output"]
    stage_report.details.update({"json": str(json_path), "html": str(html_path)})
    return stage_report
