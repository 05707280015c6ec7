"""The validation stages on small synthetic zones, with real Great Expectations and a file-backed context."""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from medcurate.core.context import RunContext, StageFailed
from medcurate.core.keys import pseudonym
from medcurate.core.schema import (
    DEID_DOCUMENT_SCHEMA,
    QUARANTINE_SCHEMA,
    Document,
    Provenance,
    documents_to_table,
    make_doc_id,
)
from medcurate.core.spec import SpecError, parse_spec
from medcurate.core.zones import Zones, write_parquet
from pipelines.quality.stage import curate, validate_raw, validate_shards

datasets.disable_progress_bars()

KEY = b"x" * 32
NOTES = [
    (
        "n1",
        "MRN-48213",
        "Zelda Quorvik, 67F, admitted 03/14/2023 with CHF exacerbation. BNP 1840, on IV furosemide.",
    ),
    (
        "n2",
        "MRN-48213",
        "PROGRESS NOTE: pt Zelda Quorvik feels better, I/O -1.2L, Cr 1.1, plan PO lasix 40 daily.",
    ),
    (
        "n3",
        "MRN-77120",
        "Discharge summary for Tobiah Wrenfield (DOB 1958-02-09): NSTEMI s/p PCI to LAD, DAPT x12mo.",
    ),
    (
        "n4",
        "MRN-77120",
        "Radiology: CXR PA/lat for Tobiah Wrenfield shows no focal consolidation, mild cardiomegaly.",
    ),
]
ABSTRACTS = [
    ("1001", "Metformin use was associated with lower all-cause mortality in a cohort of 4,210 adults."),
    (
        "1002",
        "We report a randomized trial of early mobilisation after hip fracture surgery in 312 patients.",
    ),
    ("1003", "Serum procalcitonin guided antibiotic discontinuation safely in adult sepsis (n=520)."),
]


def _spec_data() -> dict:
    return {
        "sources": [
            {
                "name": "notes",
                "kind": "notes_csv",
                "paths": ["incoming/notes/*.csv"],
                "license": "synthetic",
                "legal_basis": "waiver",
            },
            {
                "name": "pubmed",
                "kind": "pubmed",
                "paths": ["incoming/pubmed/*.xml"],
                "license": "public-domain",
                "legal_basis": "public-domain",
            },
        ],
        "splits": {"train": 0.8, "validation": 0.1, "test": 0.1},
    }


@pytest.fixture
def ctx(tmp_path: Path) -> RunContext:
    spec = parse_spec(_spec_data(), tmp_path)
    return RunContext(spec=spec, zones=Zones(tmp_path / "data").ensure(), run_id="run-test", secret_key=KEY)


def _raw_table(source: str, kind: str, legal_basis: str, docs: list[Document]) -> pa.Table:
    provenance = Provenance(
        source=source,
        source_kind=kind,
        source_file="src-00000000000000aa",
        source_sha256="0" * 64,
        license="synthetic",
        legal_basis=legal_basis,
        run_id="run-test",
    )
    return documents_to_table(docs, provenance)


def _notes(texts: list[tuple[str, str, str]] | None = None) -> pa.Table:
    docs = [
        Document(
            natural_key=key,
            position=f"line {i + 2}",
            record_index=i,
            doc_type="clinical_note",
            text=text,
            patient_key=patient,
        )
        for i, (key, patient, text) in enumerate(texts or NOTES)
    ]
    return _raw_table("notes", "notes_csv", "waiver", docs)


def _abstracts(texts: list[tuple[str, str]] | None = None) -> pa.Table:
    docs = [
        Document(natural_key=pmid, position=f"article {i}", record_index=i, doc_type="abstract", text=text)
        for i, (pmid, text) in enumerate(texts or ABSTRACTS)
    ]
    return _raw_table("pubmed", "pubmed", "public-domain", docs)


def _write_raw(ctx: RunContext, notes: pa.Table, abstracts: pa.Table) -> None:
    write_parquet(notes, ctx.zones.raw / "notes" / "part-00000.parquet", ctx.zones)
    write_parquet(abstracts, ctx.zones.raw / "pubmed" / "part-00000.parquet", ctx.zones)


def _to_deid(raw: pa.Table, drop_pseudonym_of: set[str] = frozenset()) -> pa.Table:
    """A stand-in for the deid stage's output: same rows, the raw patient key replaced by its pseudonym and
    full dates by a tag (curate's residual-PHI gate would block a raw date left verbatim)."""
    pseudonyms = [
        None if key is None or doc_id in drop_pseudonym_of else pseudonym(KEY, key)
        for key, doc_id in zip(raw["patient_key"].to_pylist(), raw["doc_id"].to_pylist(), strict=True)
    ]
    text = pc.replace_substring_regex(raw["text"], r"\d{2}/\d{2}/\d{4}|\d{4}-\d{2}-\d{2}", "[DATE]")
    table = raw.set_column(raw.schema.get_field_index("text"), "text", text)
    table = table.drop_columns(["patient_key"]).append_column("patient_pseudonym", pa.array(pseudonyms, pa.string()))
    return table.cast(DEID_DOCUMENT_SCHEMA)


def _write_deid(ctx: RunContext, notes: pa.Table, abstracts: pa.Table) -> None:
    write_parquet(notes, ctx.zones.deid / "notes" / "part-00000.parquet")
    write_parquet(abstracts, ctx.zones.deid / "pubmed" / "part-00000.parquet")


def _quarantine(ctx: RunContext, stage: str, source: str) -> list[dict]:
    path = ctx.zones.quarantine / stage / f"{source}.parquet"
    return pq.read_table(path).to_pylist() if path.exists() else []


def _governance_bytes(ctx: RunContext) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(ctx.zones.governance.rglob("*")) if p.is_file())


def _assert_no_phi_in_governance(ctx: RunContext, phi: list[str]) -> None:
    blob = _governance_bytes(ctx)
    leaked = [value for value in phi if value.encode() in blob]
    assert not leaked, f"{len(leaked)} raw values found under governance/"


def test_raw_suite_passes_on_clean_data_and_builds_data_docs(ctx: RunContext) -> None:
    _write_raw(ctx, _notes(), _abstracts())
    report = validate_raw(ctx)
    assert {s: (c.input, c.output, dict(c.removed)) for s, c in report.sources.items()} == {
        "notes": (4, 4, {}),
        "pubmed": (3, 3, {}),
    }
    assert [(v["suite"], v["source"], v["success"], v["evaluated"]) for v in report.details["validations"]] == [
        ("raw", "notes", True, 4),
        ("raw", "pubmed", True, 3),
    ]
    assert Path(report.details["data_docs"]).name == "index.html"
    assert Path(report.details["data_docs"]).is_file()
    assert not list((ctx.zones.quarantine / "validate_raw").glob("*.parquet"))
    # The GX project is file-backed and re-opened: a second run against it works.
    assert validate_raw(ctx).total_output == 7


def test_failing_records_are_quarantined_under_their_expectation_without_leaking_text(
    ctx: RunContext,
) -> None:
    notes = [
        *NOTES,
        ("n5", "MRN-77120", "Telephone note: Tobiah Wrenfield reports no chest pain since discharge."),
        ("n6", "MRN-48213", "Nursing: Zelda Quorvik ambulating in hall with walker, SpO2 95% RA."),
        ("n7", "MRN-77120", ""),
        ("n1", "MRN-48213", "Duplicate of n1 for Zelda Quorvik: K 3.9, Mg 2.0, repeat BMP in AM."),
        ("n8", None, "Unlinked note: patient seen in clinic, BP 142/88, follow up in 2 weeks."),
        ("n9", "MRN-77120", "this text is replaced by a null below"),
    ]
    table = _notes(notes)
    null_last_text = pa.array([*table["text"].to_pylist()[:-1], None], pa.large_string())
    table = table.set_column(table.schema.get_field_index("text"), "text", null_last_text)
    _write_raw(ctx, table, _abstracts())
    report = validate_raw(ctx)

    quarantined = _quarantine(ctx, "validate_raw", "notes")
    n1, n7, n8, n9 = (make_doc_id("notes", k) for k in ("n1", "n7", "n8", "n9"))
    assert sorted((r["doc_id"], r["reason"]) for r in quarantined) == sorted(
        [
            (n1, "expect_column_values_to_be_unique"),  # both rows carrying the duplicated id
            (n1, "expect_column_values_to_be_unique"),
            (n7, "expect_column_values_to_be_between"),  # empty text: length below min_chars
            (n8, "expect_column_values_to_not_be_null"),  # clinical record without patient key
            (n9, "expect_column_values_to_not_be_null"),  # null text
        ]
    )
    assert report.sources["notes"].output == 5
    assert [r["detail"] for r in quarantined if r["doc_id"] == n9] == [
        "failed expect_column_values_to_not_be_null(text_length), expect_column_values_to_be_in_set(text_is_blank)"
    ]
    assert dict(report.sources["notes"].removed) == {
        "expect_column_values_to_be_between": 1,
        "expect_column_values_to_be_unique": 2,
        "expect_column_values_to_not_be_null": 2,
    }
    failed = {v["source"]: v["failed_expectations"] for v in report.details["validations"]}
    assert failed["notes"] == {
        "expect_column_values_to_be_between": 1,
        "expect_column_values_to_be_in_set": 2,  # the empty and the null text are also blank
        "expect_column_values_to_be_unique": 2,
        "expect_column_values_to_not_be_null": 2,
    }
    for row in quarantined:
        assert row["detail"].startswith("failed expect_") and "Zelda" not in row["detail"]
    _assert_no_phi_in_governance(ctx, [t for _, _, t in notes if t] + ["Zelda Quorvik", "MRN-48213", "MRN-77120"])


def test_source_with_empty_text_column_fails_the_batch_and_publishes_nothing(ctx: RunContext) -> None:
    _write_raw(ctx, _notes(), _abstracts([(pmid, "") for pmid, _ in ABSTRACTS]))
    with pytest.raises(StageFailed) as failure:
        validate_raw(ctx)
    message = str(failure.value)
    assert "pubmed" in message and "3 of 3 rows failed" in message and "notes" not in message
    assert not any(ctx.zones.curated.rglob("*.parquet"))
    assert (ctx.zones.governance / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").is_file()
    _assert_no_phi_in_governance(ctx, [t for _, _, t in NOTES] + ["MRN-48213"])


def test_source_with_input_files_but_no_rows_fails(ctx: RunContext) -> None:
    (ctx.spec.base_dir / "incoming" / "pubmed").mkdir(parents=True)
    (ctx.spec.base_dir / "incoming" / "pubmed" / "broken.xml").write_text("<PubmedArticleSet>")
    write_parquet(_notes(), ctx.zones.raw / "notes" / "part-00000.parquet", ctx.zones)
    with pytest.raises(StageFailed, match=r"pubmed.*expect_table_row_count_to_be_between"):
        validate_raw(ctx)


def test_raw_schema_mismatch_fails(ctx: RunContext) -> None:
    write_parquet(_notes().drop_columns(["legal_basis"]), ctx.zones.raw / "notes" / "part-00000.parquet", ctx.zones)
    with pytest.raises(StageFailed, match=r"missing \['legal_basis'\]"):
        validate_raw(ctx)


def test_curate_publishes_passing_rows_and_quarantines_the_rest(ctx: RunContext) -> None:
    notes, abstracts = _notes(), _abstracts()
    n2, n3 = make_doc_id("notes", "n2"), make_doc_id("notes", "n3")
    # n2 was quarantined by an earlier stage; n3 lost its pseudonym in de-identification.
    _write_raw(ctx, notes, abstracts)
    write_parquet(_quarantine_record(n2), ctx.zones.quarantine / "validate_raw" / "notes.parquet", ctx.zones)
    _write_deid(ctx, _to_deid(notes, drop_pseudonym_of={n3}), _to_deid(abstracts))
    report = curate(ctx)

    assert {s: (c.input, c.output, dict(c.removed)) for s, c in report.sources.items()} == {
        "notes": (4, 2, {"quarantined_earlier": 1, "expect_column_values_to_not_be_null": 1}),
        "pubmed": (3, 3, {}),
    }
    assert [(r["doc_id"], r["reason"]) for r in _quarantine(ctx, "curate", "notes")] == [
        (n3, "expect_column_values_to_not_be_null")
    ]
    curated = pq.read_table(ctx.zones.curated / "notes" / "part-00000.parquet")
    assert curated.schema.equals(DEID_DOCUMENT_SCHEMA)
    assert sorted(curated["doc_id"].to_pylist()) == sorted(make_doc_id("notes", k) for k in ("n1", "n4"))
    assert pq.read_table(ctx.zones.curated / "pubmed" / "part-00000.parquet").num_rows == 3
    assert {v["suite"] for v in report.details["validations"]} == {"deid", "curated"}


def _quarantine_record(doc_id: str, source: str = "notes") -> pa.Table:
    row = {
        "run_id": "run-test",
        "stage": "validate_raw",
        "source": source,
        "source_file": "src-00000000000000aa",
        "doc_id": doc_id,
        "reason": "expect_column_values_to_be_unique",
    }
    return pa.Table.from_pylist([row], schema=QUARANTINE_SCHEMA)


def test_curate_fails_when_live_documents_vanished_but_not_when_all_were_quarantined(ctx: RunContext) -> None:
    notes, abstracts = _notes(), _abstracts()
    _write_raw(ctx, notes, abstracts)
    _write_deid(ctx, _to_deid(notes), _to_deid(abstracts).slice(0, 0))
    with pytest.raises(StageFailed, match=r"pubmed.*expect_table_row_count_to_be_between"):
        curate(ctx)

    quarantined = pa.concat_tables([_quarantine_record(d, "pubmed") for d in abstracts["doc_id"].to_pylist()])
    write_parquet(quarantined, ctx.zones.quarantine / "deid" / "pubmed.parquet", ctx.zones)
    report = curate(ctx)
    assert (report.sources["pubmed"].input, report.sources["pubmed"].output) == (0, 0)
    assert report.sources["notes"].output == 4


def test_curate_batch_failure_leaves_curated_empty(ctx: RunContext) -> None:
    abstracts = _abstracts([(pmid, "   ") for pmid, _ in ABSTRACTS])
    _write_deid(ctx, _to_deid(_notes()), _to_deid(abstracts))
    with pytest.raises(StageFailed, match="pubmed"):
        curate(ctx)
    assert not any(ctx.zones.curated.rglob("*.parquet"))
    assert not list(ctx.zones.root.glob(".curated*"))


def _write_split(
    ctx: RunContext, split: str, doc_ids: list[str], lengths: list[int], n_tokens: list[int] | None = None
) -> None:
    data = {
        "doc_id": doc_ids,
        "source": ["notes"] * len(doc_ids),
        "source_kind": ["notes_csv"] * len(doc_ids),
        "split": [split] * len(doc_ids),
        "input_ids": [list(range(1, n + 1)) for n in lengths],
        "n_tokens": n_tokens or lengths,
    }
    features = datasets.Features(
        {
            "doc_id": datasets.Value("string"),
            "source": datasets.Value("string"),
            "source_kind": datasets.Value("string"),
            "split": datasets.Value("string"),
            "input_ids": datasets.Sequence(datasets.Value("uint16")),
            "n_tokens": datasets.Value("int32"),
        }
    )
    datasets.Dataset.from_dict(data, features=features).save_to_disk(str(ctx.zones.shards / split))


def test_validate_shards_checks_tokens_splits_and_curated_parents(ctx: RunContext) -> None:
    notes = _to_deid(_notes())
    write_parquet(notes, ctx.zones.curated / "notes" / "part-00000.parquet")
    ids = notes["doc_id"].to_pylist()
    _write_split(ctx, "train", ids[:3], [5, 7, 9])
    _write_split(ctx, "test", ids[3:], [4])
    report = validate_shards(ctx)
    assert report.details["splits"] == {"test": 1, "train": 3}
    assert report.details["validations"][0]["success"] is True

    _write_split(ctx, "test", [ids[3], "f" * 32], [4, 6])
    with pytest.raises(StageFailed, match=r"has_curated_parent"):
        validate_shards(ctx)


def test_validate_shards_rejects_token_count_mismatch_and_cross_split_duplicates(ctx: RunContext) -> None:
    notes = _to_deid(_notes())
    write_parquet(notes, ctx.zones.curated / "notes" / "part-00000.parquet")
    ids = notes["doc_id"].to_pylist()
    _write_split(ctx, "train", ids[:2], [5, 7])
    _write_split(ctx, "validation", ids[1:3], [7, 0])
    _write_split(ctx, "test", ids[3:], [6], n_tokens=[8])
    with pytest.raises(StageFailed) as failure:
        validate_shards(ctx)
    message = str(failure.value)
    assert "expect_column_values_to_be_unique(doc_id)" in message
    assert "expect_column_values_to_be_between(input_ids_length)" in message
    assert "expect_column_pair_values_to_be_equal(n_tokens)" in message


MARKUP = '<script>alert("spec")</script><img src=x onerror=alert(1)>'


@pytest.mark.parametrize("name", [f"notes{MARKUP}", 'x" onmouseover="alert(1)', "a&amp;b", "a b", "a'b"])
def test_a_source_name_cannot_carry_markup(tmp_path: Path, name: str) -> None:
    data = _spec_data()
    data["sources"][0]["name"] = name
    with pytest.raises(SpecError, match="not a plain identifier"):
        parse_spec(data, tmp_path)


def test_no_data_docs_page_carries_markup_from_the_spec(tmp_path: Path) -> None:
    """Source names are plain identifiers (the test above); the free-text licence reaches the curated suite's
    value set, so it is the spec text that does reach the Data Docs: it must arrive escaped."""
    data = _spec_data()
    data["sources"][0]["license"] = f"DUA {MARKUP}"
    data["sources"][1]["license"] = "synthetic"  # what the abstracts' rows say
    spec = parse_spec(data, tmp_path)
    ctx = RunContext(spec=spec, zones=Zones(tmp_path / "data").ensure(), run_id="run-test", secret_key=KEY)
    notes = _notes()
    notes = notes.set_column(notes.schema.get_field_index("license"), "license", pa.array([f"DUA {MARKUP}"] * 4))
    _write_raw(ctx, notes, _abstracts())
    validate_raw(ctx)
    _write_deid(ctx, _to_deid(notes), _to_deid(_abstracts()))
    curate(ctx)
    pages = sorted((ctx.zones.governance).rglob("*.html"))
    assert pages
    assert [p.name for p in pages if "<script>alert" in p.read_text() or "<img src=x" in p.read_text()] == []
    assert any("&lt;script&gt;alert" in p.read_text() for p in pages)  # the licence is shown, escaped
