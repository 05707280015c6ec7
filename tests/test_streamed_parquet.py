"""Parquet files that grow with the run, written without holding them: curate's spills come back in fixed-size
pieces whatever batches were written, so a curated part streamed from a spill has the same bytes whatever batch
size curate ran with; deid's events and every stage's quarantine records go out a row group at a time, with bytes
that depend only on the rows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medcurate.core.quarantine import QUARANTINE_GROUP_ROWS, QuarantineWriter
from medcurate.core.zones import RowGroupWriter, Zones, make_private_dir, write_parquet, write_parquet_groups
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


def _dicts(start: int, stop: int) -> list[dict]:
    return _rows(start, stop).to_pylist()


def test_row_group_writer_bytes_depend_only_on_the_rows(tmp_path: Path) -> None:
    hashes = set()
    for step in (1, 7, 250):
        writer = RowGroupWriter(tmp_path / f"events-{step}.parquet", SCHEMA, group_rows=100)
        for start in range(0, 250, step):
            writer.extend(_dicts(start, min(250, start + step)))
        path = writer.commit()
        assert [pq.ParquetFile(path).metadata.row_group(i).num_rows for i in range(3)] == [100, 100, 50]
        assert pq.read_table(path).equals(_rows(0, 250))
        hashes.add(_sha(path))
    assert len(hashes) == 1


def test_row_group_writer_up_to_one_group_is_the_whole_table_write(tmp_path: Path) -> None:
    for rows in (0, 40):
        writer = RowGroupWriter(tmp_path / f"streamed-{rows}.parquet", SCHEMA, group_rows=100)
        writer.extend(_dicts(0, rows))
        whole = write_parquet(pa.Table.from_pylist(_dicts(0, rows), schema=SCHEMA), tmp_path / f"whole-{rows}.parquet")
        assert _sha(writer.commit()) == _sha(whole)


def test_an_aborted_row_group_writer_leaves_the_previous_file(tmp_path: Path) -> None:
    path = write_parquet(_rows(0, 3), tmp_path / "events.parquet")
    before = _sha(path)
    writer = RowGroupWriter(path, SCHEMA, group_rows=10)
    writer.extend(_dicts(0, 25))
    writer.abort()
    assert _sha(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.parquet"]


def test_quarantine_records_stream_to_an_owner_only_file_that_appears_at_flush(tmp_path: Path) -> None:
    zones = Zones(tmp_path / "data").ensure()
    stale = zones.quarantine / "curate" / ".notes.parquet.tmp"
    make_private_dir(stale.parent)
    stale.write_bytes(b"a crashed attempt")
    writer = QuarantineWriter(zones, "curate", "run-1")
    assert not stale.exists()
    records = QUARANTINE_GROUP_ROWS * 2 + 5
    for i in range(records):
        writer.add(source="notes", source_file=f"file-{i % 3}", doc_id=f"doc-{i}", reason="near_duplicate")
    # Two full row groups are on disk already, under the hidden name readers skip; the file appears whole.
    assert not (zones.quarantine / "curate" / "notes.parquet").exists()
    assert stale.stat().st_mode & 0o777 == 0o600  # this attempt's temporary file, owner-only from the start
    [path] = writer.flush()
    assert path.stat().st_mode & 0o777 == 0o600
    groups = pq.ParquetFile(path).metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == [QUARANTINE_GROUP_ROWS] * 2 + [5]
    assert pq.read_table(path, columns=["doc_id"]).column("doc_id").to_pylist() == [f"doc-{i}" for i in range(records)]
    assert writer.count("notes") == writer.count() == records and writer.count("pubmed") == 0
    assert writer.flush() == [path]  # flushing again changes nothing
