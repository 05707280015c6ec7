"""Mode ``packed`` and the per-source mixing weights, on the small curated zone of ``test_shard``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest
from test_shard import SPLITS, TEXT_BY_DOC, shard_context
from tokenizers import Tokenizer

from medcurate.core.spec import SpecError, parse_spec
from pipelines.shard.mixing import copies_of
from pipelines.shard.packing import Packer, packed_tally
from pipelines.shard.ray_tokenize import SAMPLED_OUT, token_id_type
from pipelines.shard.stage import run

SEQ_LEN = 16
MIXING = {"pubmed": 2.0, "notes": 0.5}


@pytest.fixture(scope="module")
def packed_build(ray_local, tmp_path_factory):
    ctx = shard_context(
        tmp_path_factory.mktemp("packed"),
        seq_len=SEQ_LEN,
        shard={"mode": "packed", "target_shard_bytes": 2000, "mixing": MIXING},
    )
    report = run(ctx)
    manifest = json.loads((ctx.zones.shards / "manifest.json").read_text())
    return ctx, report, manifest


def _segments(ds: datasets.Dataset) -> dict[tuple[str, int], list[int]]:
    """Reassemble each document copy from its segments, checking every continuation picks up where it left."""
    documents: dict[tuple[str, int], list[int]] = {}
    for row in ds:
        cu = row["cu_seqlens"]
        assert cu[0] == 0 and cu[-1] == row["n_tokens"] == len(row["input_ids"])
        for i, key in enumerate(zip(row["doc_ids"], row["doc_repeats"], strict=True)):
            tokens = documents.setdefault(key, [])
            assert row["doc_token_starts"][i] == len(tokens)
            tokens.extend(row["input_ids"][cu[i] : cu[i + 1]])
    return documents


def test_packed_sequences_reproduce_the_documents_exactly(packed_build):
    ctx, _, _ = packed_build
    tokenizer = Tokenizer.from_file(str(ctx.zones.shards / "tokenizer" / "tokenizer.json"))
    bos, eos = tokenizer.token_to_id("<|bos|>"), tokenizer.token_to_id("<|eos|>")
    for split in SPLITS:
        ds = datasets.load_from_disk(str(ctx.zones.shards / split))
        assert ds.features["input_ids"].feature.dtype == "uint16"
        lengths = ds["n_tokens"]
        assert lengths and all(n == SEQ_LEN for n in lengths[:-1]) and 0 < lengths[-1] <= SEQ_LEN
        documents = _segments(ds)
        for (doc_id, _), ids in documents.items():
            assert ids == [bos, *tokenizer.encode(TEXT_BY_DOC[doc_id], add_special_tokens=False).ids, eos]
        # Every token of the split is in exactly one document segment: nothing padded, nothing dropped.
        assert sum(len(ids) for ids in documents.values()) == sum(lengths)


def test_mixing_weights_sample_the_train_split_only(packed_build):
    ctx, report, manifest = packed_build
    copies = {
        split: Counter(doc_id for doc_id, _ in _segments(datasets.load_from_disk(str(ctx.zones.shards / split))))
        for split in SPLITS
    }
    source_of = {doc_id: {"n": "notes", "f": "ehr_fhir", "a": "pubmed"}[doc_id[0]] for doc_id in TEXT_BY_DOC}
    for doc_id, count in copies["train"].items():
        assert count == copies_of(doc_id, MIXING.get(source_of[doc_id], 1.0))
    assert {count for split in ("validation", "test") for count in copies[split].values()} == {1}
    assert report.sources["notes"].removed[SAMPLED_OUT] > 0
    assert report.details["mixing_extra_copies"] == {"pubmed": sum(copies["train"][d] - 1 for d in copies["train"])}
    # The manifest counts copies as documents, and its tokens by source add up.
    assert manifest["totals"]["documents"] == sum(sum(c.values()) for c in copies.values())
    assert manifest["mode"] == "packed" and manifest["seq_len"] == SEQ_LEN
    assert sum(t["tokens"] for t in manifest["totals"]["by_source"].values()) == manifest["totals"]["tokens"]
    assert manifest["mixing"]["weights"] == MIXING


def test_copies_follow_the_weight_and_only_grow_with_it():
    doc_ids = [f"{i:032x}" for i in range(4000)]
    for weight in (0.3, 1.0, 1.5, 3.0):
        assert abs(np.mean([copies_of(d, weight) for d in doc_ids]) - weight) < 0.03
    kept_low = {d for d in doc_ids if copies_of(d, 0.3)}
    assert kept_low <= {d for d in doc_ids if copies_of(d, 0.6)}
    source = {"name": "a", "kind": "pubmed", "paths": ["x"], "license": "l", "legal_basis": "consent"}
    with pytest.raises(SpecError, match="mixing"):
        parse_spec({"sources": [source], "shard": {"mixing": {"a": -1}}}, Path("."))


def test_packer_is_independent_of_batching_and_uses_uint32_for_big_vocabularies():
    id_type = token_id_type(70_000)
    assert id_type == pa.uint32()
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, 50, 120)
    documents = pa.table(
        {
            "doc_id": [f"d{i:03d}" for i in range(120)],
            "repeat": pa.array([0] * 120, pa.int32()),
            "source": [f"s{i % 3}" for i in range(120)],
            "input_ids": pa.array([rng.integers(0, 70_000, n).tolist() for n in lengths], pa.list_(id_type)),
            "n_tokens": pa.array(lengths, pa.int32()),
        }
    )
    outputs = []
    for batch_rows in (1, 13, 120):
        packer = Packer("train", 37, id_type)
        pieces = [packer.add(documents.slice(i, batch_rows)) for i in range(0, 120, batch_rows)]
        outputs.append(pa.concat_tables([*pieces, packer.finish()]))
    assert outputs[0].equals(outputs[1]) and outputs[0].equals(outputs[2])
    packed = outputs[0]
    assert packed.schema.field("input_ids").type == pa.list_(pa.uint32())
    flat = np.concatenate([np.asarray(ids, dtype=np.uint32) for ids in documents.column("input_ids").to_pylist()])
    assert np.array_equal(np.concatenate([np.asarray(r) for r in packed.column("input_ids").to_pylist()]), flat)
    docs, tokens = packed_tally(packed)
    assert sum(docs.values()) == 120 and sum(tokens.values()) == int(lengths.sum())
