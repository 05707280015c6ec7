"""Reading the zones the quality stages validate, with the schema checked before any row is looked at.

A part whose columns or types differ from the zone's schema is a batch-level failure: the stage cannot
tell which rows are good, so it refuses the batch (``StageFailed``) instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medcurate.context import StageFailed

SHARD_COLUMNS = ("doc_id", "source", "split", "input_ids", "n_tokens")
# The columns validate_shards reads; token ids may be uint16 or uint32 per tokenizer, so types are promoted.
EMPTY_SHARD_ROWS = pa.schema(
    [
        pa.field("doc_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("split", pa.string()),
        pa.field("input_ids", pa.list_(pa.uint16())),
        pa.field("n_tokens", pa.int32()),
        pa.field("split_directory", pa.string()),
    ]
).empty_table()


# Nulls here are record-level failures the suites quarantine; in any other non-nullable column they are
# a schema violation (the stages stamp those columns, so a null means a broken writer, not a bad record).
RECORD_CHECKED_COLUMNS = ("doc_id", "text")


def relaxed(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every field nullable: how parts are held until the suite has judged their rows."""
    return pa.schema([f.with_nullable(True) for f in schema])


def _schema_problems(table: pa.Table, expected: pa.Schema) -> list[str]:
    actual = table.schema
    missing = [f.name for f in expected if f.name not in actual.names]
    unexpected = [name for name in actual.names if name not in expected.names]
    wrong_type = [f.name for f in expected if f.name in actual.names and not actual.field(f.name).type.equals(f.type)]
    nulls = [
        f.name
        for f in expected
        if not f.nullable
        and f.name in actual.names
        and f.name not in RECORD_CHECKED_COLUMNS
        and table.column(f.name).null_count
    ]
    return [
        f"{label} {names}"
        for label, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong type", wrong_type),
            ("nulls in non-nullable", nulls),
        )
        if names
    ]


def read_parts(directory: Path, schema: pa.Schema, stage: str) -> list[tuple[Path, pa.Table]]:
    """Every Parquet part below ``directory`` (sorted), checked against ``schema``, in ``relaxed(schema)``."""
    parts = sorted(p for p in directory.rglob("*.parquet") if not p.name.startswith("."))
    tables = []
    for part in parts:
        table = pq.read_table(part)
        problems = _schema_problems(table, schema)
        if problems:
            raise StageFailed(
                f"{stage}: {part.name} in {directory.name}/ does not match the zone schema: " + "; ".join(problems)
            )
        tables.append((part, table.select(schema.names).cast(relaxed(schema))))
    return tables


def _doc_ids(paths: Iterable[Path]) -> set[str]:
    """The doc_id column of Parquet files, read alone: no text is loaded."""
    found: set[str] = set()
    for path in paths:
        found.update(d for d in pq.read_table(path, columns=["doc_id"]).column("doc_id").to_pylist() if d)
    return found


def zone_doc_ids(directory: Path) -> set[str]:
    return _doc_ids(p for p in sorted(directory.rglob("*.parquet")) if not p.name.startswith("."))


def read_shard_rows(shards: Path, stage: str) -> pa.Table:
    """Rows of every split directory (HF ``save_to_disk`` Arrow stream files), plus ``split_directory``."""
    visible = sorted(p for p in shards.iterdir() if not p.name.startswith(".")) if shards.is_dir() else []
    tables = [EMPTY_SHARD_ROWS]
    for split_dir in (p for p in visible if p.is_dir()):
        for arrow_file in sorted(p for p in split_dir.glob("*.arrow") if not p.name.startswith(".")):
            with pa.ipc.open_stream(arrow_file) as reader:
                table = reader.read_all()
            missing = [c for c in SHARD_COLUMNS if c not in table.column_names]
            if missing:
                raise StageFailed(f"{stage}: {split_dir.name}/{arrow_file.name} lacks column(s) {missing}")
            directory = pa.array([split_dir.name] * table.num_rows, pa.string())
            tables.append(table.select(list(SHARD_COLUMNS)).append_column("split_directory", directory))
    return pa.concat_tables(tables, promote_options="permissive")
