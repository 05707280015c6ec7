"""Reading the zones the quality stages validate, with the schema checked before any row is looked at.

A part whose columns or types differ from the zone's schema is a batch-level failure: the stage cannot
tell which rows are good, so it refuses the batch (``StageFailed``) instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medcurate.core.context import StageFailed
from medcurate.core.schema import DEID_DOCUMENT_SCHEMA
from medcurate.core.zones import zone_parts
from pipelines.quality.id_lookup import IdLookup

# The columns each shard mode must have (see docs/shards.md); validate_shards reads them as segment lists.
SHARD_COLUMNS = {
    "documents": ("doc_id", "source", "split", "input_ids", "n_tokens"),
    "packed": ("split", "input_ids", "n_tokens", "cu_seqlens", "doc_ids", "doc_repeats", "sources", "doc_token_starts"),
}
SEGMENT_LISTS = ("doc_ids", "doc_repeats", "sources", "doc_token_starts")
# Both modes as validate_shards holds them: one row per shard row, its documents as segment lists (a documents
# row is one segment spanning the row), and the token ids reduced to their count so no row's ids stay in memory.
SHARD_ROWS = pa.schema(
    [
        pa.field("split", pa.string()),
        pa.field("split_directory", pa.string()),
        pa.field("n_tokens", pa.int32()),
        pa.field("input_ids_length", pa.int32()),
        pa.field("cu_seqlens", pa.list_(pa.int32())),
        pa.field("doc_ids", pa.list_(pa.string())),
        pa.field("doc_repeats", pa.list_(pa.int32())),
        pa.field("sources", pa.list_(pa.string())),
        pa.field("doc_token_starts", pa.list_(pa.int32())),
    ]
)


# Nulls here are record-level failures the suites quarantine; in any other non-nullable column they are
# a schema violation (the stages stamp those columns, so a null means a broken writer, not a bad record).
RECORD_CHECKED_COLUMNS = ("doc_id", "text")


def relaxed(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every field nullable: how parts are held until the suite has judged their rows."""
    return pa.schema([f.with_nullable(True) for f in schema])


def deid_table(docs: list[dict[str, Any]]) -> pa.Table:
    """Curate's documents (dicts in the de-identified zone's schema) as a table, before the suite has judged
    them: the relaxed schema, so a null a suite must quarantine does not fail the conversion."""
    return pa.Table.from_pylist(docs, schema=relaxed(DEID_DOCUMENT_SCHEMA))


def _schema_problems(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    missing = [f.name for f in expected if f.name not in actual.names]
    unexpected = [name for name in actual.names if name not in expected.names]
    wrong_type = [f.name for f in expected if f.name in actual.names and not actual.field(f.name).type.equals(f.type)]
    return [
        f"{label} {names}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong type", wrong_type))
        if names
    ]


def _null_problems(table: pa.Table, expected: pa.Schema) -> list[str]:
    nulls = [
        f.name
        for f in expected
        if not f.nullable
        and f.name in table.column_names
        and f.name not in RECORD_CHECKED_COLUMNS
        and table.column(f.name).null_count
    ]
    return [f"nulls in non-nullable {nulls}"] if nulls else []


def part_batches(
    directory: Path, schema: pa.Schema, stage: str, batch_rows: int, columns: list[str] | None = None
) -> Iterator[pa.Table]:
    """Every Parquet part below ``directory`` (sorted), ``batch_rows`` rows at a time, in ``relaxed(schema)``
    (only ``columns``, given).  A part's schema is checked before any of its rows is read, its nulls batch by
    batch, so a stage can stream a zone without holding it."""
    names = columns or schema.names
    target = relaxed(pa.schema([schema.field(name) for name in names]))
    for part in zone_parts(directory):
        parquet = pq.ParquetFile(part)
        problems = _schema_problems(parquet.schema_arrow, schema)
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=names) if not problems else ():
            table = pa.Table.from_batches([batch])
            problems = _null_problems(table, schema)
            if problems:
                break
            yield table.select(names).cast(target)
        if problems:
            raise StageFailed(
                f"{stage}: {part.name} in {directory.name}/ does not match the zone schema: " + "; ".join(problems)
            )


def zone_rows(directory: Path) -> int:
    """Rows of a zone directory's Parquet parts, from their footers: nothing else is read."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in zone_parts(directory))


def _doc_id_column(directory: Path) -> pa.ChunkedArray:
    """The doc_id column of a zone directory's Parquet parts, read alone: no text is loaded."""
    columns = [pq.read_table(p, columns=["doc_id"]).column("doc_id") for p in zone_parts(directory)]
    return pa.chunked_array([c for column in columns for c in column.chunks], pa.string())


def zone_doc_ids(directory: Path) -> set[str]:
    return {d for d in _doc_id_column(directory).to_pylist() if d}


def zone_id_lookup(directory: Path) -> IdLookup:
    """The doc_ids of a zone directory (nulls left out) to look batches up in: 16 bytes an id, not a set's ~100."""
    ids = _doc_id_column(directory).combine_chunks()
    return IdLookup(ids.filter(pc.is_valid(ids)))


def _one_segment(values: pa.ChunkedArray, value_type: pa.DataType) -> pa.Array:
    """Each value as a one-element list: a documents-mode row is a single segment."""
    flat = values.combine_chunks().cast(value_type)
    return pa.ListArray.from_arrays(pa.array(range(len(flat) + 1), pa.int32()), flat)


def _as_segments(table: pa.Table) -> pa.Table:
    """A documents-mode part in the packed layout: ``cu_seqlens`` [0, n_tokens], repeat 0 when not recorded."""
    n = table.num_rows
    repeat = table.column("repeat") if "repeat" in table.column_names else pa.chunked_array([[0] * n], pa.int32())
    n_tokens = table.column("n_tokens").combine_chunks().cast(pa.int32())
    cu_values = pa.array([v for end in n_tokens.to_pylist() for v in (0, end)], pa.int32())
    return pa.table(
        {
            "split": table.column("split"),
            "input_ids": table.column("input_ids"),
            "n_tokens": n_tokens,
            "cu_seqlens": pa.ListArray.from_arrays(pa.array(range(0, 2 * n + 1, 2), pa.int32()), cu_values),
            "doc_ids": _one_segment(table.column("doc_id"), pa.string()),
            "doc_repeats": _one_segment(repeat, pa.int32()),
            "sources": _one_segment(table.column("source"), pa.string()),
            "doc_token_starts": _one_segment(pa.chunked_array([[0] * n], pa.int32()), pa.int32()),
        }
    )


def _segment_lists_agree(table: pa.Table) -> bool:
    """Whether every row has as many doc_repeats, sources and doc_token_starts as doc_ids.

    Without that no segment can be told apart from its neighbour, so it is a broken writer, not a bad row.
    """
    lengths = [pc.fill_null(pc.list_value_length(table.column(c)), -1) for c in SEGMENT_LISTS]
    return all(pc.all(pc.equal(lengths[0], other)).as_py() is not False for other in lengths[1:])


def shard_row_batches(shards: Path, mode: str, stage: str) -> Iterator[pa.Table]:
    """The rows of every split directory (HF ``save_to_disk`` Arrow stream files) in ``SHARD_ROWS`` layout, one
    shard file at a time, split directories and files in name order.

    ``mode`` is the spec's ``shard.mode``; a part lacking that mode's columns fails the batch.
    """
    visible = sorted(p for p in shards.iterdir() if not p.name.startswith(".")) if shards.is_dir() else []
    for split_dir in (p for p in visible if p.is_dir()):
        for arrow_file in sorted(p for p in split_dir.glob("*.arrow") if not p.name.startswith(".")):
            with pa.ipc.open_stream(arrow_file) as reader:
                table = reader.read_all()
            where = f"{split_dir.name}/{arrow_file.name}"
            missing = [c for c in SHARD_COLUMNS[mode] if c not in table.column_names]
            if missing:
                raise StageFailed(f"{stage}: {where} lacks column(s) {missing} of shard mode '{mode}'")
            rows = _as_segments(table) if mode == "documents" else table
            if not _segment_lists_agree(rows):
                raise StageFailed(f"{stage}: {where} has rows whose segment lists differ in length")
            derived = {
                "split_directory": pa.array([split_dir.name] * rows.num_rows, pa.string()),
                "input_ids_length": pc.list_value_length(rows.column("input_ids")).cast(pa.int32()),
            }
            yield pa.table(
                {f.name: derived[f.name] if f.name in derived else rows.column(f.name) for f in SHARD_ROWS}
            ).cast(SHARD_ROWS)
