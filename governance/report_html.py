"""``governance/report.html``: the report dict (``report_data.build_report``) through a Jinja2 template.

The page is written for a reader who is not a programmer: plain tables (never a raw dict), "none" or "none
configured" instead of ``{}``, every reason code explained in a glossary, a table of contents.  It stays
self-contained (inline CSS and SVG, no script, font or URL of any kind) so it can be archived as evidence
and read offline; the template autoescapes every value.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from governance.report_data import FUNNEL

TEMPLATES = Path(__file__).with_name("templates")
TEMPLATE = "report.html.j2"
# Sections in reading order: (id, title) for the table of contents and the headings.
SECTIONS = (
    ("motivation", "Motivation"),
    ("composition", "Composition"),
    ("collection", "Collection"),
    ("preprocessing", "Preprocessing and de-identification"),
    ("uses", "Uses"),
    ("distribution", "Distribution"),
    ("maintenance", "Maintenance"),
    ("glossary", "Glossary of reason codes"),
)
# Facts whose empty value means "nothing was set up", not "nothing happened".
CONFIGURED_FACTS = {"benchmarks"}


def bar_chart_svg(title: str, items: list[tuple[str, float]], color: str = "#3b6ea8", chart_id: str = "") -> Markup:
    """A horizontal bar chart as inline SVG (no script, no external resource)."""
    if not items:
        return Markup('<p class="meta">{}: nothing to show</p>').format(title)
    width, bar_h, label_w = 640, 22, 180
    height = bar_h * len(items) + 30
    peak = max(v for _, v in items) or 1
    parts = [
        Markup(
            '<svg role="img" aria-label="{}" class="chart" id="{}" width="{}" height="{}" viewBox="0 0 {} {}">'
        ).format(title, chart_id, width, height, width, height),
        Markup('<text x="0" y="14" font-size="13" font-weight="600">{}</text>').format(title),
    ]
    for i, (label, value) in enumerate(items):
        y = 24 + i * bar_h
        w = (width - label_w - 70) * value / peak
        parts.append(Markup('<text x="0" y="{}" font-size="12">{}</text>').format(y + 14, label))
        parts.append(
            Markup('<rect x="{}" y="{}" width="{:.1f}" height="{}" fill="{}"/>').format(
                label_w, y + 3, w, bar_h - 6, color
            )
        )
        parts.append(
            Markup('<text x="{:.1f}" y="{}" font-size="12">{:,.0f}</text>').format(label_w + w + 6, y + 14, value)
        )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def _label(key: str) -> str:
    return key.replace("_", " ")


def _plain(key: str, value: Any) -> str:
    """One fact's value in words: numbers as numbers, empty as "none" / "none configured", maps as pairs."""
    if isinstance(value, dict | list) and not value:
        return "none configured" if key in CONFIGURED_FACTS else "none"
    if key == "clusters" and isinstance(value, dict):
        return "; ".join(f"{n:,} of {size} documents" for size, n in sorted(value.items(), key=lambda kv: int(kv[0])))
    if isinstance(value, dict):
        return "; ".join(f"{_label(str(k))}: {_plain(str(k), v)}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,}"
    return "none" if value is None else str(value)


def fact_rows(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A stage's free-form facts (gate outcome, dedup counts) as (fact, value) rows of plain words.

    A nested group of facts becomes its own rows, labelled "group: fact"; dedup clusters read
    "2 of 3 documents" (two clusters of three copies each).
    """
    rows: list[tuple[str, str]] = []
    for key, value in mapping.items():
        label = f"{prefix}{_label(key)}"
        if isinstance(value, dict) and value and key not in ("clusters", *CONFIGURED_FACTS):
            rows.extend(fact_rows(value, prefix=f"{label}: "))
        else:
            rows.append((label, _plain(key, value)))
    return rows


def _dropped_reasons(step: dict[str, Any]) -> str:
    """A curate step's drops summed over sources, as "reason: count" pairs."""
    total: Counter[str] = Counter()
    for counts in (step.get("dropped") or {}).values():
        total.update(counts)
    return ", ".join(f"{reason}: {n:,}" for reason, n in sorted(total.items())) or "–"


def _num(value: Any) -> Markup | str:
    """A number right-aligned with thousands separators; anything else as text ("–" for nothing)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Markup('<td class="num">{:,}</td>').format(value)
    return Markup("<td>{}</td>").format("–" if value is None or value == "" else value)


def _rows(r: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """Every table of the page as rows of plain values (the template lays them out, it computes nothing)."""
    manifest = r.get("manifest") or {}
    return {
        "sources": [[s["name"], s["kind"], s["license"], s["legal_basis"], s["owner"]] for s in r["sources"]],
        "funnel": [[row["source"], *(row[c] for c in FUNNEL)] for row in r["funnel"]],
        "stage": [
            [
                name,
                s["input"],
                s["output"],
                ", ".join(f"{k}: {v:,}" for k, v in s["removed_by_reason"].items()) or "–",
                s["seconds"],
            ]
            for name, s in r["stages"].items()
        ],
        "deid": [
            [m["data"], m["recall"], m["precision"], m["precision_kind"], m["note"]]
            for m in r["deid_method"]["measurements"]
        ],
        "phi": [
            [source, label, n]
            for source, counts in sorted(r["phi_by_source"].items())
            for label, n in sorted(counts.items())
        ],
        "validation": [
            [
                v.get("stage"),
                v.get("suite"),
                v.get("source", "all"),
                "passed" if v.get("success") else "FAILED",
                ", ".join(f"{k}: {n:,}" for k, n in (v.get("failed_expectations") or {}).items()) or "–",
            ]
            for v in r["validations"]
        ],
        "quarantine": [
            [q["stage"], q["reason"], q["count"], r["reason_codes"].get(q["reason"]) or "not in the glossary"]
            for q in r["quarantine"]["by_stage_and_reason"]
        ],
        "step": [
            [
                step["step"],
                sum((step.get("input") or {}).values()),
                sum(step["kept"].values()),
                _dropped_reasons(step),
            ]
            for step in r["curation"]["steps"]
        ],
        "shard": [
            [s["path"], s["split"], s["documents"], s["tokens"], s["sha256"]] for s in manifest.get("shards", [])
        ],
        "erasure": [
            [
                e["erasure_id"],
                e["applied_at"],
                e["kind"],
                e["subject"],
                e["documents_removed"],
                ", ".join(e["shards_rewritten"]) or "–",
                "yes" if e["verified"] else "NO",
            ]
            for e in r["erasures"]
        ],
    }


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cell"] = _num
    env.globals.update(bar_chart_svg=bar_chart_svg, fact_rows=fact_rows)
    return env


def render_html(report: dict[str, Any]) -> str:
    funnel_totals = [(c, sum(row[c] for row in report["funnel"])) for c in FUNNEL]
    cards = [
        ("documents ingested", funnel_totals[0][1]),
        ("documents in shards", report["documents_in_shards"]),
        ("tokens", report["tokens"]["total"]),
        ("PHI entities replaced", sum(report["phi_by_type"].values())),
        ("quarantined (files and records)", report["quarantine"]["total"]),
        ("erasures applied", len(report["erasures"])),
    ]
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            r=report,
            rows=_rows(report),
            sections=SECTIONS,
            cards=cards,
            funnel_columns=FUNNEL,
            funnel_totals=funnel_totals,
        )
    )
