"""The shard stage end to end on a tiny synthetic curated zone, with one real Ray instance for the module."""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import pyarrow as pa
import pytest
from tokenizers import Tokenizer

from medcurate.core.context import RunContext, StageFailed
from medcurate.core.hashing import merkle_root, sha256_file
from medcurate.core.schema import DEID_DOCUMENT_SCHEMA, METADATA_FIELDS
from medcurate.core.spec import parse_spec
from medcurate.core.zones import Zones, write_parquet
from pipelines.shard.hf_layout import SplitWriter, row_payload_bytes
from pipelines.shard.ray_tokenize import (
    EMPTY_AFTER_TOKENIZATION,
    TokenizeDocuments,
    curated_batches,
    document_schema,
    tokenized_batches,
)
from pipelines.shard.splits import assign_split
from pipelines.shard.stage import curated_files, documents_tally, run
from pipelines.shard.tokenizer import prepare_tokenizer

RUN_ID = "run-test-shard"
SPLITS = {"train": 0.5, "validation": 0.25, "test": 0.25}
WORDS = (
    "patient admitted with fever and cough chest x-ray shows no infiltrate started on oral antibiotics "
    "follow up in clinic blood pressure stable denies chest pain randomized trial cohort outcome"
).split()


def _text(seed: int, n_words: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] for i in range(n_words)) + f". Visit {seed}."


def _row(doc_id: str, source: str, kind: str, text: str, patient: str | None, pmid: str | None = None) -> dict:
    metadata = dict.fromkeys(METADATA_FIELDS)
    metadata["pmid"] = pmid
    return {
        "doc_id": doc_id,
        "source": source,
        "source_kind": kind,
        "source_file": "src-00000000000000aa",
        "source_sha256": "0" * 64,
        "position": f"record {doc_id}",
        "record_index": 0,
        "doc_type": "note" if kind != "pubmed" else "abstract",
        "text": text,
        "metadata": metadata,
        "license": "synthetic",
        "legal_basis": "waiver",
        "run_id": "run-curate",
        "patient_pseudonym": patient,
    }


def curated_rows() -> dict[str, list[dict]]:
    """Notes and FHIR documents for the same 10 patients (several each), 8 abstracts, one empty note."""
    notes = [
        _row(f"n{p:02d}{k}", "notes", "notes_csv", _text(p * 10 + k, 12 + k * 5), f"P{p:020d}")
        for p in range(10)
        for k in range(3)
    ]
    notes.append(_row("n-empty", "notes", "notes_csv", "", "P00000000000000000001"))
    fhir = [_row(f"f{p:02d}", "ehr_fhir", "fhir", _text(p + 100, 30), f"P{p:020d}") for p in range(10)]
    pubmed = [_row(f"a{i:02d}", "pubmed", "pubmed", _text(i + 200, 40), None, pmid=str(31000000 + i)) for i in range(8)]
    return {"notes": notes, "ehr_fhir": fhir, "pubmed": pubmed}


TEXT_BY_DOC = {row["doc_id"]: row["text"] for rows in curated_rows().values() for row in rows}


def shard_context(root: Path, **overrides) -> RunContext:
    zones = Zones(root).ensure()
    for source, rows in curated_rows().items():
        # Two parts per source, so Ray reads several files and order must not matter.
        half = len(rows) // 2
        for index, part in enumerate((rows[:half], rows[half:])):
            table = pa.Table.from_pylist(part, schema=DEID_DOCUMENT_SCHEMA)
            write_parquet(table, zones.curated / source / f"part-{index}.parquet")
    sources = [
        {"name": name, "kind": kind, "paths": ["unused/*"], "license": "synthetic", "legal_basis": "waiver"}
        for name, kind in (("notes", "notes_csv"), ("ehr_fhir", "fhir"), ("pubmed", "pubmed"))
    ]
    spec = parse_spec(
        {
            "sources": sources,
            "splits": SPLITS,
            "tokenizer": {"vocab_size": 400},
            "shard": {"target_shard_bytes": 1500},
            **overrides,
        },
        root,
    )
    return RunContext(spec=spec, zones=zones, run_id=RUN_ID, secret_key=b"x" * 32)


@pytest.fixture(scope="module")
def build(ray_local, tmp_path_factory):
    ctx = shard_context(tmp_path_factory.mktemp("build_a"))
    return ctx, run(ctx)


@pytest.fixture(scope="module")
def manifest(build) -> dict:
    ctx, _ = build
    return json.loads((ctx.zones.shards / "manifest.json").read_text())


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load_splits(shards: Path) -> dict[str, datasets.Dataset]:
    return {split: datasets.load_from_disk(str(shards / split)) for split in SPLITS}


def test_round_trip_through_load_from_disk(build):
    ctx, _ = build
    tokenizer = Tokenizer.from_file(str(ctx.zones.shards / "tokenizer" / "tokenizer.json"))
    bos, eos = tokenizer.token_to_id("<|bos|>"), tokenizer.token_to_id("<|eos|>")
    seen = 0
    for split, ds in _load_splits(ctx.zones.shards).items():
        assert ds.features["input_ids"].feature.dtype == "uint16"
        for row in ds:
            text = TEXT_BY_DOC[row["doc_id"]]
            assert row["split"] == split
            assert row["input_ids"] == [bos, *tokenizer.encode(text, add_special_tokens=False).ids, eos]
            assert row["n_tokens"] == len(row["input_ids"])
            assert tokenizer.decode(row["input_ids"], skip_special_tokens=True) == text
            seen += 1
    assert seen == len(TEXT_BY_DOC) - 1  # all but the empty note


def test_rows_keep_the_curated_order_and_shards_are_bounded(build, manifest):
    ctx, _ = build
    # Curated files are read sorted by path (source directories, then parts), rows in file order.
    order = [row["doc_id"] for source in sorted(curated_rows()) for row in curated_rows()[source]]
    for ds in _load_splits(ctx.zones.shards).values():
        assert ds["doc_id"] == [doc_id for doc_id in order if doc_id in set(ds["doc_id"])]
    assert len(manifest["shards"]) > len(SPLITS)  # the small target cut splits into several shards
    assert all(s["documents"] > 0 for s in manifest["shards"])


def test_manifest_matches_shards(build, manifest):
    ctx, _ = build
    shards = ctx.zones.shards
    n_tokens = sum(sum(ds["n_tokens"]) for ds in _load_splits(shards).values())
    assert manifest["totals"]["tokens"] == n_tokens
    assert sum(s["tokens"] for s in manifest["totals"]["by_split"].values()) == n_tokens
    assert sum(s["tokens"] for s in manifest["totals"]["by_source"].values()) == n_tokens
    for entry in manifest["shards"]:
        assert sha256_file(shards / entry["path"]) == entry["sha256"]
        assert sum(entry["tokens_by_source"].values()) == entry["tokens"]
    on_disk = {p.relative_to(shards).as_posix() for p in shards.glob("*/data-*.arrow")}
    assert on_disk == {entry["path"] for entry in manifest["shards"]}
    assert manifest["merkle"]["root"] == merkle_root({e["path"]: e["sha256"] for e in manifest["shards"]})
    assert manifest["tokenizer"]["sha256"] == sha256_file(shards / "tokenizer" / "tokenizer.json")
    assert manifest["spec_config_hash"] == ctx.spec.config_hash()
    assert manifest["run_id"] == RUN_ID


def test_report_counts_and_details(build, manifest):
    ctx, report = build
    notes = report.sources["notes"]
    assert (notes.input, notes.output, dict(notes.removed)) == (31, 30, {EMPTY_AFTER_TOKENIZATION: 1})
    assert (report.sources["pubmed"].input, report.sources["pubmed"].output) == (8, 8)
    assert report.details["total_tokens"] == manifest["totals"]["tokens"]
    assert report.details["shard_count"] == len(manifest["shards"])
    assert report.details["manifest"] == str(ctx.zones.shards / "manifest.json")
    assert set(report.details["tokens_by_source"]) == {"notes", "ehr_fhir", "pubmed"}


def test_no_patient_or_article_in_two_splits(build):
    ctx, _ = build
    rows = {row["doc_id"]: row for rows in curated_rows().values() for row in rows}
    split_of_group: dict[str, set[str]] = {}
    for split, ds in _load_splits(ctx.zones.shards).items():
        for doc_id in ds["doc_id"]:
            row = rows[doc_id]
            group = row["patient_pseudonym"] or row["metadata"]["pmid"]
            split_of_group.setdefault(group, set()).add(split)
    assert all(len(splits) == 1 for splits in split_of_group.values())
    assert len({s for splits in split_of_group.values() for s in splits}) == len(SPLITS)


def test_metadata_files_match_datasets_save_to_disk(build, tmp_path):
    ctx, _ = build
    ours = ctx.zones.shards / "train"
    ds = datasets.load_from_disk(str(ours))
    n_shards = len(list(ours.glob("data-*.arrow")))
    ds.save_to_disk(str(tmp_path), num_shards=n_shards)
    assert (tmp_path / "dataset_info.json").read_bytes() == (ours / "dataset_info.json").read_bytes()
    theirs_state = json.loads((tmp_path / "state.json").read_text())
    our_state = json.loads((ours / "state.json").read_text())
    # load_from_disk derives a new fingerprint when it applies the format; everything else must agree.
    assert {k: v for k, v in theirs_state.items() if k != "_fingerprint"} == {
        k: v for k, v in our_state.items() if k != "_fingerprint"
    }
    first = f"data-00000-of-{n_shards:05d}.arrow"
    assert pa.ipc.open_stream(tmp_path / first).schema.metadata == pa.ipc.open_stream(ours / first).schema.metadata


def test_two_builds_are_byte_identical(build, tmp_path):
    ctx_a, _ = build
    ctx_b = shard_context(tmp_path / "build_b")
    run(ctx_b)
    files_a, files_b = tree_bytes(ctx_a.zones.shards), tree_bytes(ctx_b.zones.shards)
    assert sorted(files_a) == sorted(files_b)
    assert "manifest.json" in files_a and "tokenizer/tokenizer.json" in files_a
    assert [name for name in files_a if files_a[name] != files_b[name]] == []


def test_actors_give_results_back_in_input_order_whatever_their_number(ray_local, tmp_path):
    ctx = shard_context(tmp_path / "root")
    files = curated_files(ctx.zones.curated)
    tokenizer = prepare_tokenizer(ctx.spec, files, tmp_path / "tokenizer.json")
    # Many small calls, so several are in flight on each actor at once.
    batches = [b.slice(i, 3) for b in curated_batches(files) for i in range(0, b.num_rows, 3)]
    options = {
        "bos_id": tokenizer.bos_id,
        "eos_id": tokenizer.eos_id,
        "vocab_size": tokenizer.vocab_size,
        "splits": SPLITS,
        "mixing": {"notes": 1.5},
    }
    in_process = TokenizeDocuments(tokenizer.to_json(), **options)
    expected = pa.concat_tables([in_process.tokenize(b) for b in batches])
    assert expected.num_rows > len(batches) * 3  # the mixing weight made copies
    for workers in (None, 1, 2):  # None: the driver tokenizes too while the actors start; 1: the driver alone
        results = list(tokenized_batches(batches, tokenizer.to_json(), workers=workers, **options))
        assert len(results) == len(batches)
        assert pa.concat_tables(results).equals(expected)


def test_the_driver_tokenizing_while_actors_start_leaves_its_environment_alone(ray_local, tmp_path, monkeypatch):
    """Until an actor is up the driver tokenizes single-threaded, but a later stage in the same process (a
    tokenizer being trained) must still get the tokenizer's thread pool."""
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    ctx = shard_context(tmp_path / "root")
    files = curated_files(ctx.zones.curated)
    tokenizer = prepare_tokenizer(ctx.spec, files, tmp_path / "tokenizer.json")
    options = {"bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id, "vocab_size": tokenizer.vocab_size}
    batches = list(curated_batches(files))
    results = list(tokenized_batches(batches, tokenizer.to_json(), splits=SPLITS, mixing={}, **options))
    assert sum(r.num_rows for r in results) == sum(b.num_rows for b in batches)
    assert "TOKENIZERS_PARALLELISM" not in os.environ


def test_given_tokenizer_is_used_as_is(build, tmp_path):
    ctx_a, _ = build
    given = tmp_path / "given-tokenizer.json"
    trained = ctx_a.zones.shards / "tokenizer" / "tokenizer.json"
    given.write_bytes(trained.read_bytes() + b"\n")  # differs from a trained one
    ctx = shard_context(tmp_path / "build_c", tokenizer={"path": str(given), "vocab_size": 99})
    report = run(ctx)
    assert (ctx.zones.shards / "tokenizer" / "tokenizer.json").read_bytes() == given.read_bytes()
    manifest = json.loads((ctx.zones.shards / "manifest.json").read_text())
    assert manifest["tokenizer"]["sha256"] == sha256_file(given)
    assert (
        report.details["total_tokens"]
        == json.loads((ctx_a.zones.shards / "manifest.json").read_text())["totals"]["tokens"]
    )


def test_tokenizer_without_bos_is_refused(ray_local, tmp_path):
    other = Tokenizer.from_str(
        json.dumps({"version": "1.0", "model": {"type": "WordLevel", "vocab": {"[UNK]": 0}, "unk_token": "[UNK]"}})
    )
    path = tmp_path / "other.json"
    other.save(str(path))
    ctx = shard_context(tmp_path / "root", tokenizer={"path": str(path)})
    with pytest.raises(StageFailed, match="<\\|bos\\|>"):
        run(ctx)
    assert not (ctx.zones.shards / "manifest.json").exists()


def test_empty_zone_fails(tmp_path):
    spec = shard_context(tmp_path / "documents").spec
    empty = RunContext(spec=spec, zones=Zones(tmp_path / "empty").ensure(), run_id=RUN_ID, secret_key=b"x" * 32)
    with pytest.raises(StageFailed, match="no curated"):
        run(empty)


def test_split_assignment_follows_fractions():
    keys = [f"P{i:020d}" for i in range(4000)]
    assigned = [assign_split(k, SPLITS) for k in keys]
    assert assigned == [assign_split(k, SPLITS) for k in keys]
    for split, fraction in SPLITS.items():
        assert abs(assigned.count(split) / len(keys) - fraction) < 0.03
    assert {assign_split(k, {"train": 1.0, "test": 0.0}) for k in keys} == {"train"}


def test_split_writer_bytes_do_not_depend_on_batching(tmp_path):
    schema = document_schema(pa.uint16())
    rows = [
        {"doc_id": f"d{i:04d}", "source": "s", "source_kind": "pubmed", "split": "train", "repeat": 0}
        | {"input_ids": list(range(i % 50 + 2)), "n_tokens": i % 50 + 2}
        for i in range(300)
    ]
    table = pa.Table.from_pylist(rows, schema=schema)
    whole = SplitWriter(tmp_path / "whole", "train", schema, 2000, "d", documents_tally)
    whole.write(table)
    shards = whole.close()
    pieces = SplitWriter(tmp_path / "pieces", "train", schema, 2000, "d", documents_tally)
    for start in range(0, table.num_rows, 7):
        pieces.write(table.slice(start, 7))
    pieces.close()
    assert len(shards) > 5
    assert tree_bytes(tmp_path / "whole") == tree_bytes(tmp_path / "pieces")
    for shard in shards:
        written = pa.ipc.open_stream(shard.path).read_all()
        assert written.num_rows == shard.documents
        assert written.num_rows == 1 or row_payload_bytes(written).sum() <= 2000
    assert datasets.load_from_disk(str(tmp_path / "whole"))["doc_id"] == table.column("doc_id").to_pylist()
