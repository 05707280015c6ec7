"""The run report: ``governance/report.json`` for machines and ``governance/report.html`` for people.

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

from medcurate.context import RunContext, StageReport, load_stage_reports
from medcurate.runner import STAGE_NAMES
from medcurate.zones import PHI_ZONES

STAGE = "report"
FUNNEL_STAGES = ("ingest", "validate_raw", "deid", "curate", "shard")


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


def _funnel(reports: dict[str, StageReport], sources: list[str]) -> list[dict[str, Any]]:
    rows = []
    for source in sources:
        row: dict[str, Any] = {"source": source}
        ingest = reports.get("ingest")
        row["parsed"] = ingest.counts(source).input if ingest else 0
        for stage in FUNNEL_STAGES:
            report = reports.get(stage)
            row[stage] = report.sources[source].output if report and source in report.sources else None
        rows.append(row)
    return rows


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
        "zones": {
            zone: ("owner only: contains PHI" if zone in PHI_ZONES else "de-identified: project members")
            for zone in ("raw", "quarantine", "deid", "curated", "shards", "governance")
        },
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


def bar_chart_svg(title: str, items: list[tuple[str, float]], color: str = "#3b6ea8") -> str:
    """A horizontal bar chart as inline SVG (no script, no external resource)."""
    if not items:
        return f'<p class="meta">{_e(title)}: nothing to show</p>'
    width, bar_h, label_w = 640, 22, 180
    height = bar_h * len(items) + 30
    peak = max(v for _, v in items) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" class="chart" '
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


def render_html(report: dict[str, Any]) -> str:
    stages = report["stages"]
    manifest = report.get("manifest") or {}
    totals = manifest.get("totals", {})
    ingest_in = sum(row["parsed"] for row in report["funnel"])
    sharded = stages.get("shard", {}).get("output", 0)
    cards = [
        ("documents parsed", ingest_in),
        ("documents in shards", sharded),
        ("tokens", totals.get("tokens", 0)),
        ("PHI entities replaced", sum(report["phi_by_type"].values())),
        ("quarantined", report["quarantine"]["total"] + report["input_files"]["quarantined"]),
    ]
    sections = [
        f"<h1>Corpus report: {_e(report['corpus'])}</h1>",
        f'<p class="meta">run <code>{_e(report["run_id"])}</code> · generated {_e(report["generated_at"])} · '
        f"spec hash <code>{_e(report['spec_config_hash'][:16])}</code></p>",
        '<section id="at-a-glance"><div class="cards">'
        + "".join(f"<div class='card'><b>{v:,}</b>{_e(k)}</div>" for k, v in cards)
        + "</div></section>",
        '<section id="sources"><h2>Sources</h2>'
        + _table(
            ["source", "kind", "licence", "legal basis", "owner"],
            [[s["name"], s["kind"], s["license"], s["legal_basis"], s["owner"]] for s in report["sources"]],
        )
        + "</section>",
        '<section id="funnel"><h2>Funnel by source</h2>'
        + _table(
            ["source", "parsed", *FUNNEL_STAGES],
            [
                [r["source"], r["parsed"], *(r[s] if r[s] is not None else "–" for s in FUNNEL_STAGES)]
                for r in report["funnel"]
            ],
        )
        + bar_chart_svg(
            "Documents after each stage",
            [(s, stages[s]["output"]) for s in FUNNEL_STAGES if s in stages],
        )
        + "</section>",
        '<section id="stages"><h2>Stages</h2>'
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
        + "</section>",
        '<section id="phi"><h2>De-identification</h2>'
        + _table(["PHI type", "replaced"], sorted(report["phi_by_type"].items()))
        + bar_chart_svg(
            "PHI replaced by type", sorted(report["phi_by_type"].items(), key=lambda kv: -kv[1]), color="#a8553b"
        )
        + "</section>",
        '<section id="quarantine"><h2>Quarantine</h2>'
        + f"<p>{report['input_files']['quarantined']} of {report['input_files']['total']} input files and "
        f"{report['quarantine']['total']} records quarantined (raw copies are kept in the owner-only "
        "quarantine zone).</p>"
        + _table(
            ["stage", "reason", "count"],
            [[q["stage"], q["reason"], q["count"]] for q in report["quarantine"]["by_stage_and_reason"]],
        )
        + "</section>",
        '<section id="validation"><h2>Validation (Great Expectations)</h2>'
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
        + "</section>",
        '<section id="shards"><h2>Shards</h2>'
        + (
            f"<p>Merkle root <code>{_e((manifest.get('merkle') or {}).get('root'))}</code> · tokenizer sha256 "
            f"<code>{_e((manifest.get('tokenizer') or {}).get('sha256'))}</code></p>"
            + _table(
                ["shard", "split", "documents", "tokens", "sha256"],
                [[s["path"], s["split"], s["documents"], s["tokens"], s["sha256"]] for s in manifest.get("shards", [])],
            )
            + bar_chart_svg(
                "Tokens by source",
                sorted((totals.get("tokens_by_source") or {}).items(), key=lambda kv: -kv[1]),
                color="#3b8a6e",
            )
            if manifest
            else "<p>No shards were written.</p>"
        )
        + "</section>",
        '<section id="access"><h2>Access</h2>'
        + _table(["zone", "who may read it"], sorted(report["zones"].items()))
        + "</section>",
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>medcurate report {_e(report['run_id'])}</title><style>{_CSS}</style></head><body>"
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
    stage_report.details.update({"json": str(json_path), "html": str(html_path)})
    return stage_report
