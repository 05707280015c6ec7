"""The zones on disk under the data root, and who may read them.

``raw/`` and ``quarantine/`` hold PHI (raw records, and records that failed before de-identification), so
they are created owner-only (0700 directories, 0600 files).  ``deid/``, ``curated/``, ``shards/`` and
``governance/`` hold only de-identified data and evidence.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

PHI_ZONES = ("raw", "quarantine")
ZONES = ("raw", "deid", "quarantine", "curated", "shards", "governance")


@dataclass(frozen=True)
class Zones:
    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def deid(self) -> Path:
        return self.root / "deid"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def curated(self) -> Path:
        return self.root / "curated"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def governance(self) -> Path:
        return self.root / "governance"

    def ensure(self) -> Zones:
        """Create every zone; PHI zones owner-only.  Safe to call again."""
        self.root.mkdir(parents=True, exist_ok=True)
        for name in ZONES:
            path = self.root / name
            path.mkdir(exist_ok=True)
            if name in PHI_ZONES:
                os.chmod(path, 0o700)
        return self

    def is_phi_path(self, path: Path) -> bool:
        resolved = path.resolve()
        return any(resolved.is_relative_to((self.root / z).resolve()) for z in PHI_ZONES)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents owner-only (0700): for directories that will hold PHI."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    return path


def temporary_path(path: Path) -> Path:
    """Where ``path`` is written before the rename that makes it appear whole: a hidden sibling (``zone_parts``
    and readers skip it) on the same filesystem (so ``os.replace`` is atomic)."""
    return path.with_name(f".{path.name}.tmp")


def write_text_atomic(path: Path, text: str) -> Path:
    """Write a text file under its temporary name, then rename: a reader never sees half a file."""
    tmp = temporary_path(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def zone_parts(directory: Path) -> list[Path]:
    """The Parquet parts below a zone directory, sorted (so row order is deterministic), without parts still
    being written (hidden temporary names)."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.rglob("*.parquet") if not p.name.startswith("."))


def write_parquet(table: pa.Table, path: Path, zones: Zones | None = None) -> Path:
    """Write a table atomically (temp name, then rename), owner-only when it lands in a PHI zone.

    A stage that dies half-way never leaves a truncated Parquet file that a later stage would read.
    """
    return write_parquet_groups([table], table.schema, path, zones)


def _make_parent(path: Path, zones: Zones | None) -> bool:
    """Create ``path``'s directory, owner-only when it lies in a PHI zone; returns whether it does."""
    phi = zones is not None and zones.is_phi_path(path)
    if phi:
        make_private_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    return phi


def write_parquet_groups(groups: Iterable[pa.Table], schema: pa.Schema, path: Path, zones: Zones | None = None) -> Path:
    """``write_parquet`` for a part streamed in: each table becomes its own row group(s), and only one is held
    at a time, so a part larger than memory can be written."""
    phi = _make_parent(path, zones)
    tmp = temporary_path(path)
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        empty = True
        for group in groups:
            writer.write_table(group)
            empty = False
        if empty:
            writer.write_table(schema.empty_table())  # one empty row group, as ``pq.write_table`` writes
    if phi:
        os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


class RowGroupWriter:
    """A Parquet file written as its rows arrive, ``group_rows`` rows to a row group (the last one shorter), under
    its temporary name until ``commit``: a reader never sees half a file, and the writer holds at most one row
    group of rows whatever the file's size.

    The one way a record that grows with the run is written: an ingested part (rows are ``Document``s, made a
    table by ``to_table``), a stage's quarantine records, the deid events.  The bytes depend only on the rows, not
    on how they were handed in; up to one group, the file is what ``write_parquet`` writes for the same rows.
    With ``zones``, a file in a PHI zone is owner-only from its first byte, as ``write_parquet`` decides it.
    """

    def __init__(
        self,
        path: Path,
        schema: pa.Schema,
        group_rows: int,
        *,
        to_table: Callable[[list[Any]], pa.Table] | None = None,
        zones: Zones | None = None,
    ) -> None:
        self.path = path
        self.schema = schema
        self.group_rows = group_rows
        self.to_table = to_table or (lambda rows: pa.Table.from_pylist(rows, schema=schema))
        self.zones = zones
        self.rows = 0
        self._tmp = temporary_path(path)
        self._buffer: list[Any] = []
        self._writer: pq.ParquetWriter | None = None
        self._committed = False

    def add(self, row: Any) -> None:
        if self._committed:
            raise RuntimeError(f"{self.path.name} is already committed")
        self._buffer.append(row)
        self.rows += 1
        if len(self._buffer) >= self.group_rows:
            self._flush()

    def extend(self, rows: Iterable[Any]) -> None:
        for row in rows:
            self.add(row)

    def _flush(self) -> None:
        if self._writer is None:
            phi = _make_parent(self.path, self.zones)
            self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
            if phi:
                os.chmod(self._tmp, 0o600)
        self._writer.write_table(self.to_table(self._buffer))
        self._buffer.clear()

    def commit(self) -> Path:
        """Write what is left (an empty row group when there were no rows at all) and put the file in place.
        Committing again changes nothing."""
        if self._committed:
            return self.path
        if self._buffer or self._writer is None:
            self._flush()
        assert self._writer is not None
        self._writer.close()
        os.replace(self._tmp, self.path)
        self._committed = True
        return self.path

    def abort(self) -> None:
        """Drop the partial file: the previous one, if any, stays as it was."""
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)


def read_zone(directory: Path, schema: pa.Schema | None = None) -> pa.Table:
    """Read every Parquet part below a zone directory (sorted, so row order is deterministic)."""
    parts = zone_parts(directory)
    if not parts:
        if schema is None:
            raise FileNotFoundError(f"no Parquet files under {directory}")
        return schema.empty_table()
    tables = [pq.read_table(p, schema=schema) if schema is not None else pq.read_table(p) for p in parts]
    return pa.concat_tables(tables)


def publish_dir(staging: Path, target: Path) -> None:
    """Swap a finished build in for the previous one: two renames, then the old set is removed.

    Readers see either the old complete set or the new complete set, never a half-written one.
    """
    staging.mkdir(parents=True, exist_ok=True)
    previous = target.with_name(f".{target.name}-previous")
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        os.replace(target, previous)
    os.replace(staging, target)
    shutil.rmtree(previous, ignore_errors=True)
