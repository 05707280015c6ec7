"""Curate's documents between its passes, on disk (Arrow IPC files), so the driver holds one batch at a time.

A spill is also how a curated part gets the same bytes whatever batches curate worked in: the Parquet writer
cuts each column into 1,024-value pieces from the start of every array chunk, and the page and dictionary
decisions follow those pieces, so a table in other chunks gives other bytes.  A spill therefore stores its rows
in chunks of exactly ``CHUNK_ROWS`` (the last one shorter), whatever batches were written to it, and ``groups``
hands them back as row groups of a fixed number of rows, made of those chunks.

Reads go through ordinary file reads, not a memory map: a mapped file's pages stay resident (and count in the
process's RSS) until the map closes, so one pass over a large spill would hold all of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

# The Parquet writer's default write batch size (``write_batch_size``); see the module docstring.
CHUNK_ROWS = 1024


class Spill:
    """An Arrow IPC file written batch by batch in ``CHUNK_ROWS`` chunks, then read back memory-mapped."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.schema = schema
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer: pa.ipc.RecordBatchFileWriter | None = pa.ipc.new_file(str(path), schema)

    def write(self, table: pa.Table) -> None:
        self._pending.append(table.cast(self.schema))
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= CHUNK_ROWS:
            self._write_chunks(final=False)

    def _write_chunks(self, final: bool) -> None:
        pending = pa.concat_tables(self._pending).combine_chunks() if self._pending else self.schema.empty_table()
        whole = pending.num_rows if final else pending.num_rows - pending.num_rows % CHUNK_ROWS
        for start in range(0, whole, CHUNK_ROWS):
            for batch in pending.slice(start, min(CHUNK_ROWS, whole - start)).to_batches():
                self._writer.write_batch(batch)
        rest = pending.slice(whole)
        self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._write_chunks(final=True)
            self._writer.close()
            self._writer = None

    def batches(self) -> Iterator[pa.Table]:
        """The rows back, one chunk at a time, in the order written."""
        return self.groups(CHUNK_ROWS)

    def groups(self, rows: int) -> Iterator[pa.Table]:
        """The rows back in tables of ``rows`` rows (a multiple of ``CHUNK_ROWS``; the last one shorter), each
        in ``CHUNK_ROWS`` chunks, in the order written."""
        if rows % CHUNK_ROWS:
            raise ValueError(f"a group of {rows} rows is not a whole number of {CHUNK_ROWS}-row chunks")
        self.close()
        per_group = rows // CHUNK_ROWS
        with pa.OSFile(str(self.path)) as source:
            reader = pa.ipc.open_file(source)
            for first in range(0, reader.num_record_batches, per_group):
                last = min(first + per_group, reader.num_record_batches)
                yield pa.Table.from_batches([reader.get_batch(i) for i in range(first, last)], self.schema)
