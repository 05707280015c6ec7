"""The curate stage end to end on small synthetic zones: every step wired in, real Great Expectations, the
report details the governance report reads, deduplication across runs and the distribution check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medcurate.core.context import RunContext, StageFailed
from medcurate.core.keys import pseudonym
from medcurate.core.schema import DEID_DOCUMENT_SCHEMA, Document, Provenance, documents_to_table, make_doc_id
from medcurate.core.spec import parse_spec
from medcurate.core.zones import Zones, read_zone, write_parquet
from pipelines.quality.stage import curate

KEY = b"k" * 32
KINDS = {"notes": ("notes_csv", "waiver"), "lab": ("hl7v2", "waiver"), "pubmed": ("pubmed", "public-domain")}
KINDS["pmc"] = ("pmc", "open-license")
ABSTRACTS = [
    "Background: whether early restrictive fluid resuscitation improves outcomes in sepsis compared with liberal "
    "fluid resuscitation is uncertain. Methods: in this randomized trial we enrolled 3718 patients in the "
    "intensive care unit and assigned them to early restrictive or liberal fluid resuscitation. Results: the "
    "primary outcome, 90-day mortality, occurred in 13.5% and 32.9% of patients.",
    "Background: procalcitonin guidance may shorten antibiotic courses in adults with lower respiratory tract "
    "infection. Methods: we randomly assigned 1664 adults in 14 emergency departments to procalcitonin guided "
    "or usual care. Results: antibiotic exposure fell by 2.4 days without an increase in adverse outcomes.",
    "Background: the effect of early mobilisation after hip fracture surgery on functional recovery is unclear. "
    "Methods: we enrolled 312 patients across nine hospitals and compared mobilisation within 24 hours with "
    "usual care. Results: walking independence at 30 days was more frequent with early mobilisation.",
]
NOTES = {
    # doc key: (patient key, raw text, de-identified text)
    "n1": (
        "48213",
        "Zelda Quorvik seen for CHF follow up. Weight down 2 kg on torsemide, no orthopnea, BP 128/74.",
        "Zelda seen for CHF follow up. Weight down 2 kg on torsemide, no orthopnea, BP 128/74.",
    ),
    "n2": (
        "48213",
        "Zelda Quorvik: potassium 3.4 this morning, repleted with 40 mEq oral KCl, recheck BMP tomorrow.",
        "[NAME]: potassium 3.4 this morning, repleted with 40 mEq oral KCl, recheck BMP tomorrow.",
    ),
    "n3": (
        "77120",
        "Tobiah Wrenfield: NSTEMI s/p PCI to LAD, chest pain free, continue aspirin and ticagrelor for 12 months.",
        "Ilse Brandvik: NSTEMI s/p PCI to LAD, chest pain free, continue aspirin and ticagrelor for 12 months.",
    ),
}
LAB_RAW = "Patient: Zelda Quorvik\nMRN: 48213\nSex: F\n\nBasic metabolic panel\nSodium: 138 mmol/L\nPotassium: 3.4"
LAB_DEID = "Patient: [NAME]\nMRN: [ID]\nSex: F\n\nBasic metabolic panel\nSodium: 138 mmol/L\nPotassium: 3.4"
PMC_EXTRA = (
    "Introduction: delirium affects a third of older inpatients and is associated with longer stays. We "
    "describe a multicomponent prevention programme delivered by volunteers on two geriatric wards."
)


def _spec(tmp_path: Path, sources: list[str], **quality) -> dict:
    return {
        "sources": [
            {"name": n, "kind": KINDS[n][0], "paths": [f"in/{n}/*"], "license": "synthetic", "legal_basis": KINDS[n][1]}
            for n in sources
        ],
        "quality": quality,
    }


def _ctx(tmp_path: Path, sources: list[str], run_id: str = "run-1", **quality) -> RunContext:
    spec = parse_spec(_spec(tmp_path, sources, **quality), tmp_path)
    return RunContext(spec=spec, zones=Zones(tmp_path / "data").ensure(), run_id=run_id, secret_key=KEY)


def _write(ctx: RunContext, source: str, records: list[tuple[str, str | None, str, str]]) -> None:
    """records: (natural key, patient key, raw text, de-identified text); writes both zones."""
    kind, legal_basis = KINDS[source]
    provenance = Provenance(source, kind, f"file:///in/{source}/f", "0" * 64, "synthetic", legal_basis, ctx.run_id)
    docs = [
        Document(natural_key=k, position=f"record {i}", record_index=i, doc_type="note", text=raw, patient_key=p)
        for i, (k, p, raw, _) in enumerate(records)
    ]
    raw = documents_to_table(docs, provenance)
    write_parquet(raw, ctx.zones.raw / source / "part-00000.parquet", ctx.zones)
    pseudonyms = [pseudonym(KEY, p) if p else None for _, p, _, _ in records]
    deid = raw.drop_columns(["patient_key", "text"])
    deid = deid.append_column("text", pa.array([d for *_, d in records], pa.large_string()))
    deid = deid.append_column("patient_pseudonym", pa.array(pseudonyms, pa.string()))
    write_parquet(
        deid.select(DEID_DOCUMENT_SCHEMA.names).cast(DEID_DOCUMENT_SCHEMA), ctx.zones.deid / source / "p.parquet"
    )


def _quarantine(ctx: RunContext) -> dict[str, tuple[str, str]]:
    rows = [r for p in (ctx.zones.quarantine / "curate").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    return {r["doc_id"]: (r["reason"], r["detail"]) for r in rows}


def test_curate_runs_every_step_reports_it_and_dedups_across_runs(tmp_path: Path) -> None:
    benchmark = tmp_path / "medqa.jsonl"
    question = "In a randomized trial of procalcitonin guided care, " + ABSTRACTS[1].split("Methods: ")[1][:90]
    benchmark.write_text(json.dumps({"question": question, "answer": "2.4 days", "context": ""}) + "\n")
    decontamination = [{"name": "medqa", "path": str(benchmark)}]
    ctx = _ctx(tmp_path, ["notes", "lab", "pubmed", "pmc"], decontamination=decontamination, max_source_drop=1.0)
    _write(ctx, "notes", [(k, p, raw, deid) for k, (p, raw, deid) in NOTES.items()])
    _write(ctx, "lab", [("m1", "48213", LAB_RAW, LAB_DEID)])
    _write(ctx, "pubmed", [(f"pm{i}", None, text, text) for i, text in enumerate(ABSTRACTS)])
    _write(ctx, "pmc", [("pmc0", None, ABSTRACTS[0], ABSTRACTS[0]), ("pmc1", None, PMC_EXTRA, PMC_EXTRA)])
    report = curate(ctx)

    ids = {k: make_doc_id(s, k) for s, keys in (("notes", NOTES), ("pubmed", ("pm0", "pm1", "pm2"))) for k in keys}
    ids["pmc0"] = make_doc_id("pmc", "pmc0")
    quarantined = _quarantine(ctx)
    assert {doc_id: reason for doc_id, (reason, _) in quarantined.items()} == {
        ids["n1"]: "residual_phi:name",  # the first name, read from the HL7 header of the same patient key
        ids["pmc0"]: "exact_duplicate",
        ids["pm1"]: "decontaminated:medqa",
    }
    assert quarantined[ids["pmc0"]][1] == f"exact_dedup: kept twin {ids['pm0']}"
    assert {s: (c.input, c.output) for s, c in report.sources.items()} == {
        "notes": (3, 2),
        "lab": (1, 1),
        "pubmed": (3, 2),
        "pmc": (2, 1),
    }
    details = report.details
    assert details["residual_phi"]["blocked_by_kind"] == {"name": 1}
    assert details["dedup"]["exact"] == {"dropped": 1, "clusters": {"2": 1}}
    assert details["decontamination"]["benchmarks"]["medqa"]["documents_removed"] == 1
    steps = {s["step"]: s for s in details["curation_steps"]}
    assert list(steps)[0] == "gx_deid" and list(steps)[-1] == "gx_curated"
    assert steps["residual_phi_gate"]["dropped"] == {"notes": {"residual_phi:name": 1}}
    assert {v["suite"] for v in details["validations"]} == {"deid", "curated"}
    curated = read_zone(ctx.zones.curated)
    assert curated.num_rows == 6 and ids["n1"] not in curated["doc_id"].to_pylist()
    governance = b"".join(p.read_bytes() for p in ctx.zones.governance.rglob("*") if p.is_file())
    assert b"Zelda" not in governance and b"Quorvik" not in governance

    # A later run with new documents only: a near copy of a published abstract is dropped for its earlier twin.
    later = _ctx(tmp_path, ["notes", "lab", "pubmed", "pmc"], run_id="run-2", max_source_drop=1.0)
    for source in ("notes", "lab"):
        shutil.rmtree(later.zones.raw / source)
        shutil.rmtree(later.zones.deid / source)
    near_copy = ABSTRACTS[2].replace("312", "318") + " Funding: national research council."
    fresh = "Background: vitamin D supplementation and falls in older adults remain debated. Methods: a cohort."
    _write(later, "pubmed", [("pm9", None, near_copy, near_copy), ("pm10", None, fresh, fresh)])
    _write(later, "pmc", [("pmc8", None, ABSTRACTS[1], ABSTRACTS[1])])
    report = curate(later)
    reason, detail = _quarantine(later)[make_doc_id("pubmed", "pm9")]
    assert reason == "near_duplicate" and f"kept twin {ids['pm2']}" in detail
    assert report.details["dedup"]["near"]["earlier_runs_compared"] == 6
    assert {s: c.output for s, c in report.sources.items() if c.input} == {"pubmed": 1, "pmc": 1}


def test_a_source_that_drops_sharply_from_the_last_run_fails_the_batch(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, ["pubmed"])
    _write(ctx, "pubmed", [(f"pm{i}", None, t, t) for i, t in enumerate(ABSTRACTS + [PMC_EXTRA])])
    assert curate(ctx).sources["pubmed"].output == 4

    later = _ctx(tmp_path, ["pubmed"], run_id="run-2")
    _write(later, "pubmed", [("pm0", None, ABSTRACTS[0], ABSTRACTS[0])])
    with pytest.raises(StageFailed, match=r"pubmed.*expect_table_row_count_to_be_between"):
        curate(later)
    assert read_zone(ctx.zones.curated).num_rows == 4  # the previous publication stands
    assert json.loads((ctx.zones.governance / "curated_counts.json").read_text())["sources"] == {"pubmed": 4}
