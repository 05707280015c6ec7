"""The trainer-side reader (shuffle, partitions, resume, torch wrapper) and the Megatron-LM export.

Splits are written with the stage's own writer and packer from synthetic token lists: no Ray needed.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipelines.shard.hf_layout import SplitWriter
from pipelines.shard.megatron import export_megatron
from pipelines.shard.packing import Packer, packed_schema, packed_tally
from pipelines.shard.ray_tokenize import document_schema
from pipelines.shard.reader import Partition, SplitReader, position_ids
from pipelines.shard.stage import documents_tally

N_DOCS = 257


def _documents(id_type: pa.DataType | None = None) -> pa.Table:
    id_type = id_type or pa.uint16()
    rng = np.random.default_rng(3)
    lengths = rng.integers(2, 40, N_DOCS)
    return pa.table(
        {
            "doc_id": [f"d{i:04d}" for i in range(N_DOCS)],
            "source": [f"s{i % 2}" for i in range(N_DOCS)],
            "source_kind": ["pubmed"] * N_DOCS,
            "split": ["train"] * N_DOCS,
            "repeat": pa.array([0] * N_DOCS, pa.int32()),
            "input_ids": pa.array([rng.integers(0, 60_000, n).tolist() for n in lengths], pa.list_(id_type)),
            "n_tokens": pa.array(lengths, pa.int32()),
        },
        schema=document_schema(id_type),
    )


def _write_split(directory: Path, mode: str, documents: pa.Table) -> Path:
    id_type = documents.schema.field("input_ids").type.value_type
    if mode == "documents":
        writer = SplitWriter(directory, "train", document_schema(id_type), 600, "test", documents_tally)
        writer.write(documents)
    else:
        writer = SplitWriter(directory, "train", packed_schema(id_type), 600, "test", packed_tally)
        packer = Packer("train", 24, id_type)
        for start in range(0, documents.num_rows, 50):
            writer.write(packer.add(documents.slice(start, 50)))
        writer.write(packer.finish())
    assert len(writer.close()) > 3
    return directory


@pytest.fixture(scope="module")
def documents_split(tmp_path_factory) -> Path:
    return _write_split(tmp_path_factory.mktemp("documents"), "documents", _documents())


def _ids(reader: SplitReader) -> list[str]:
    return [row["doc_id"] for row in reader]


def test_shuffle_is_deterministic_by_seed_and_epoch(documents_split):
    first = _ids(SplitReader(documents_split, seed=11))
    assert first == _ids(SplitReader(documents_split, seed=11))
    assert sorted(first) == [f"d{i:04d}" for i in range(N_DOCS)] and first != sorted(first)
    assert first != _ids(SplitReader(documents_split, seed=12))
    reader = SplitReader(documents_split, seed=11)
    reader.set_epoch(1)
    assert _ids(reader) != first
    assert _ids(SplitReader(documents_split, shuffle=False)) == sorted(first)


def test_rank_and_worker_partitions_are_disjoint_and_complete(documents_split):
    parts = [
        _ids(SplitReader(documents_split, seed=5, partition=Partition(rank, 2, worker, 3)))
        for rank in range(2)
        for worker in range(3)
    ]
    every = [doc_id for part in parts for doc_id in part]
    assert len(every) == len(set(every)) == N_DOCS
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError, match="partition"):
        Partition(rank=2, world_size=2)


def test_reader_resumes_from_its_state_dict(documents_split):
    partition = Partition(1, 2, 0, 1)
    uninterrupted = SplitReader(documents_split, seed=9, partition=partition)
    uninterrupted.set_epoch(3)
    expected = _ids(uninterrupted)
    reader = SplitReader(documents_split, seed=9, partition=partition)
    reader.set_epoch(3)
    head = [row["doc_id"] for _, row in zip(range(17), reader, strict=False)]
    restarted = SplitReader(documents_split, seed=9, partition=partition)
    restarted.load_state_dict(reader.state_dict())
    assert head + _ids(restarted) == expected
    with pytest.raises(ValueError, match="does not match"):
        SplitReader(documents_split, seed=10, partition=partition).load_state_dict(reader.state_dict())


def test_rows_are_zero_copy_numpy_views(documents_split):
    documents = _documents().to_pylist()
    reader = SplitReader(documents_split, shuffle=False)
    for row, source in zip(reader, documents, strict=True):
        assert row["input_ids"].dtype == np.uint16 and not row["input_ids"].flags.writeable
        assert row["input_ids"].tolist() == source["input_ids"] and row["n_tokens"] == source["n_tokens"]


def test_packed_rows_and_position_ids(tmp_path):
    split = _write_split(tmp_path / "packed", "packed", _documents())
    rows = list(SplitReader(split, shuffle=False))
    assert all(row["n_tokens"] == 24 for row in rows[:-1])
    stream = np.concatenate([row["input_ids"] for row in rows])
    assert stream.tolist() == [t for ids in _documents().column("input_ids").to_pylist() for t in ids]
    row = rows[1]
    positions = position_ids(np.asarray(row["cu_seqlens"]))
    cu = row["cu_seqlens"]
    assert len(cu) > 2  # the row holds a document boundary
    for i in range(len(cu) - 1):
        assert positions[cu[i] : cu[i + 1]].tolist() == list(range(cu[i + 1] - cu[i]))


def _read_megatron(prefix: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``.idx`` per Megatron-LM's MMIDIDX format and return (tokens of .bin, sizes, pointers, doc_idx)."""
    index = (prefix.parent / f"{prefix.name}.idx").read_bytes()
    assert index[:9] == b"MMIDIDX\x00\x00"
    version, code = struct.unpack("<QB", index[9:18])
    sequences, documents = struct.unpack("<QQ", index[18:34])
    assert version == 1
    dtype = {8: np.uint16, 4: np.int32}[code]
    offset = 34
    sizes = np.frombuffer(index, dtype="<i4", count=sequences, offset=offset)
    offset += sizes.nbytes
    pointers = np.frombuffer(index, dtype="<i8", count=sequences, offset=offset)
    offset += pointers.nbytes
    doc_idx = np.frombuffer(index, dtype="<i8", count=documents, offset=offset)
    assert offset + doc_idx.nbytes == len(index)
    tokens = np.fromfile(prefix.parent / f"{prefix.name}.bin", dtype=dtype)
    return tokens, sizes, pointers, doc_idx


def test_megatron_export_reads_back_per_the_format(documents_split, tmp_path):
    stats = export_megatron(documents_split, tmp_path / "train_text_document")
    tokens, sizes, pointers, doc_idx = _read_megatron(tmp_path / "train_text_document")
    documents = _documents().to_pylist()
    assert stats == {"documents": N_DOCS, "tokens": len(tokens), "dtype": "uint16"}
    assert sizes.tolist() == [d["n_tokens"] for d in documents]
    assert doc_idx.tolist() == list(range(N_DOCS + 1))
    for i, document in enumerate(documents):
        start = pointers[i] // 2
        assert tokens[start : start + sizes[i]].tolist() == document["input_ids"]


def test_megatron_export_of_a_packed_split_equals_the_documents_export(tmp_path):
    documents = _documents(pa.uint32())
    exported = {}
    for mode in ("documents", "packed"):
        split = _write_split(tmp_path / mode, mode, documents)
        stats = export_megatron(split, tmp_path / "out" / mode)
        assert stats["dtype"] == "int32" and stats["documents"] == N_DOCS
        exported[mode] = [(tmp_path / "out" / f"{mode}{ext}").read_bytes() for ext in (".bin", ".idx")]
    assert exported["packed"] == exported["documents"]
    assert _read_megatron(tmp_path / "out" / "packed")[0].dtype == np.int32


def test_torch_iterable_dataset_partitions_workers_and_ranks(documents_split):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from pipelines.shard.reader import TorchSplitDataset

    seen: list[str] = []
    for rank in range(2):
        dataset = TorchSplitDataset(documents_split, seed=4, rank=rank, world_size=2, columns=["doc_id", "input_ids"])
        dataset.set_epoch(2)
        loader = DataLoader(dataset, batch_size=None, num_workers=2)
        for row in loader:
            assert row["input_ids"].dtype == torch.int64
            seen.append(row["doc_id"])
    assert len(seen) == len(set(seen)) == N_DOCS

    dataset = TorchSplitDataset(documents_split, seed=4, rank=0, world_size=1)
    iterator = iter(dataset)
    head = [next(iterator)["doc_id"] for _ in range(5)]
    state = dataset.state_dict()
    resumed = TorchSplitDataset(documents_split, seed=4, rank=0, world_size=1)
    resumed.load_state_dict(state)
    assert head + [row["doc_id"] for row in resumed] == _ids(SplitReader(documents_split, seed=4))
