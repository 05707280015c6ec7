"""The report stage: ``governance/report.json`` for machines and ``governance/report.html`` for people.

It is organised as a datasheet for datasets (Gebru et al.): motivation, composition, collection,
preprocessing and de-identification, uses, distribution, maintenance, so an auditor finds each question
where that framework puts it; a glossary explains every reason code.  ``report_data`` gathers the figures
(counts, codes, hashes, never a document), ``report_html`` renders ``templates/report.html.j2``, and the words
and measured figures it states live in ``report_content.yaml``.  The runner calls ``run`` after the catalog
stage, and every erasure calls it again, so the report always describes the data as it stands.
"""

from __future__ import annotations

import json

from governance.report_data import build_report
from governance.report_html import render_html
from medcurate.core.context import RunContext, StageReport

STAGE = "report"


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
