"""Curate's spills: rows come back in fixed-size pieces whatever batches were written, so a curated part streamed
from a spill has the same bytes whatever batch size curate ran with, and is never held whole."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medcurate.core.zones import write_parquet, write_parquet_groups
from pipelines.quality.spill import CHUNK_ROWS, Spill

SCHEMA = pa.schema([("doc_id", pa.string()), ("text", pa.string()), ("position", pa.int64())])


def _rows(start: int, stop: int) -> pa.Table:
    return pa.table(
        {
            "doc_id": [f"doc-{i:06d}" for i in range(start, stop)],
            "text": [f"note {i % 13} " * (i % 7) for i in range(start, stop)],
            "position": list(range(start, stop)),
        },
        schema=SCHEMA,
    )


def _spill(path: Path, rows: int, batch: int) -> Spill:
    spill = Spill(path, SCHEMA)
    for start in range(0, rows, batch):
        spill.write(_rows(start, min(rows, start + batch)))
    return spill


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_groups_are_whole_chunks_whatever_the_write_batches(tmp_path: Path) -> None:
    rows = 5 * CHUNK_ROWS + 17
    for batch in (1, 333, 4096):
        groups = list(_spill(tmp_path / f"s{batch}.arrow", rows, batch).groups(2 * CHUNK_ROWS))
        assert [g.num_rows for g in groups] == [2 * CHUNK_ROWS, 2 * CHUNK_ROWS, CHUNK_ROWS + 17]
        assert all(len(c) == CHUNK_ROWS for g in groups[:2] for c in g.column("doc_id").chunks)
        assert pa.concat_tables(groups).equals(_rows(0, rows))


def test_a_streamed_part_has_the_same_bytes_whatever_the_batches(tmp_path: Path) -> None:
    rows = 5 * CHUNK_ROWS + 17
    hashes = set()
    for batch in (500, 2048):
        part = tmp_path / f"part-{batch}.parquet"
        write_parquet_groups(_spill(tmp_path / f"s{batch}.arrow", rows, batch).groups(2 * CHUNK_ROWS), SCHEMA, part)
        hashes.add(_sha(part))
        assert pq.ParquetFile(part).metadata.num_row_groups == 3
        assert pq.read_table(part).equals(_rows(0, rows))
    assert len(hashes) == 1


def test_a_part_of_one_group_is_the_whole_table_write(tmp_path: Path) -> None:
    """Up to one group, streaming changes nothing: the same bytes as writing the table at once."""
    spill = _spill(tmp_path / "s.arrow", 3 * CHUNK_ROWS + 5, 700)
    write_parquet_groups(spill.groups(4 * CHUNK_ROWS), SCHEMA, tmp_path / "streamed.parquet")
    write_parquet(pa.concat_tables(list(spill.batches())), tmp_path / "whole.parquet")
    assert _sha(tmp_path / "streamed.parquet") == _sha(tmp_path / "whole.parquet")


def test_an_empty_spill_writes_an_empty_part(tmp_path: Path) -> None:
    part = tmp_path / "empty.parquet"
    write_parquet_groups(Spill(tmp_path / "s.arrow", SCHEMA).groups(CHUNK_ROWS), SCHEMA, part)
    assert pq.read_table(part).num_rows == 0
    assert _sha(part) == _sha(write_parquet(SCHEMA.empty_table(), tmp_path / "whole.parquet"))


def test_groups_must_be_whole_chunks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="whole number"):
        next(_spill(tmp_path / "s.arrow", 10, 10).groups(CHUNK_ROWS + 1))
