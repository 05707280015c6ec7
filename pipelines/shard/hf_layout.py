"""Shards in the layout of HF ``Dataset.save_to_disk``, written by us so every byte is deterministic.

A split directory holds ``data-00000-of-000NN.arrow`` (Arrow IPC *stream* files, which ``load_from_disk``
memory-maps), ``dataset_info.json`` and ``state.json``, exactly as ``save_to_disk`` writes them, so
``datasets.load_from_disk(shards/<split>)`` works and a trainer can also stream the files with plain
pyarrow.  Writing them ourselves instead of calling ``save_to_disk`` fixes what that leaves to chance: the
fingerprint (random there, a digest of the shard files here), the record-batch boundaries (here every
``ROWS_PER_RECORD_BATCH`` rows, whatever batches arrive) and the shard boundaries (here by a row's payload
bytes against the target shard size, so the same rows always cut the same way).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.utils.py_utils import asdict

from medcurate.hashing import merkle_root, sha256_file

# Same as ``save_to_disk``'s default writer batch size.
ROWS_PER_RECORD_BATCH = 1000


@dataclass(frozen=True)
class ShardFile:
    """One written shard: what the manifest records about it."""

    path: Path
    split: str
    sha256: str
    documents: int
    tokens: int
    documents_by_source: dict[str, int]
    tokens_by_source: dict[str, int]


def row_payload_bytes(table: pa.Table) -> np.ndarray:
    """Per row, the bytes its values take in Arrow (strings, token ids, fixed-width columns, offsets).

    Depends only on the row's content, so shard cuts do not depend on how Ray batched the rows.
    """
    sizes = np.zeros(table.num_rows, dtype=np.int64)
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            sizes += pc.binary_length(column).to_numpy(zero_copy_only=False) + 4
        elif pa.types.is_list(field.type):
            item_bytes = field.type.value_type.bit_width // 8
            sizes += pc.list_value_length(column).to_numpy(zero_copy_only=False) * item_bytes + 4
        else:
            sizes += field.type.bit_width // 8
    return sizes


def canonical_batch(rows: pa.Table) -> pa.RecordBatch:
    """The rows as one record batch with freshly allocated, exact-size buffers.

    A slice keeps its parent's buffers and the IPC writer copies such over-long buffers as they are, so the
    same rows would serialize to different bytes depending on how Ray cut its blocks; ``take`` re-allocates.
    """
    batch = rows.combine_chunks().to_batches()[0]
    return batch.take(pa.array(np.arange(batch.num_rows)))


class SplitWriter:
    """Writes one split's rows, in the order given, into size-bounded HF shards under ``directory``.

    Shard files get their final ``-of-000NN`` names at ``close``, when the count is known; until then they
    are dot-prefixed parts.  Rows of each shard are summed by ``source`` for the manifest (the table must
    have ``source`` and ``n_tokens`` columns).
    """

    def __init__(
        self, directory: Path, split: str, schema: pa.Schema, target_shard_bytes: int, description: str
    ) -> None:
        self.directory = directory
        self.split = split
        self.target_shard_bytes = target_shard_bytes
        self.info = datasets.DatasetInfo(description=description, features=datasets.Features.from_arrow_schema(schema))
        self.schema = schema.with_metadata(
            {"huggingface": json.dumps({"info": {"features": asdict(self.info)["features"]}})}
        )
        self._pending: pa.Table = self.schema.empty_table()
        self._pending_bytes = np.zeros(0, dtype=np.int64)
        # Per shard: its part file, documents by source, tokens by source.
        self._parts: list[tuple[Path, Counter[str], Counter[str]]] = []
        self._stream: pa.ipc.RecordBatchStreamWriter | None = None
        self._sink: pa.OSFile | None = None
        self._shard_bytes = 0
        self._shard_docs = 0
        self._docs_by_source: Counter[str] = Counter()
        self._tokens_by_source: Counter[str] = Counter()
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, table: pa.Table) -> None:
        rows = table.select(self.schema.names).cast(self.schema)
        self._pending = pa.concat_tables([self._pending, rows])
        self._pending_bytes = np.concatenate([self._pending_bytes, row_payload_bytes(rows)])
        self._drain(final=False)

    def _drain(self, *, final: bool) -> None:
        while self._pending.num_rows:
            cumulative = np.cumsum(self._pending_bytes)
            fit = int(np.searchsorted(cumulative, self.target_shard_bytes - self._shard_bytes, side="right"))
            if self._shard_docs == 0:
                fit = max(fit, 1)  # a row larger than the target gets a shard of its own
            take = min(fit, ROWS_PER_RECORD_BATCH, self._pending.num_rows)
            shard_full = take == fit and fit < self._pending.num_rows
            if not (shard_full or take == ROWS_PER_RECORD_BATCH or final):
                return  # wait for more rows: the batch boundary is not known yet
            if take:
                self._append(self._pending.slice(0, take), int(cumulative[take - 1]))
                self._pending = self._pending.slice(take)
                self._pending_bytes = self._pending_bytes[take:]
            if shard_full:
                self._close_shard()

    def _open_shard(self) -> None:
        path = self.directory / f".part-{len(self._parts):05d}.arrow"
        self._sink = pa.OSFile(str(path), "wb")
        self._stream = pa.ipc.new_stream(self._sink, self.schema)
        self._parts.append((path, Counter(), Counter()))

    def _append(self, rows: pa.Table, payload_bytes: int) -> None:
        if self._stream is None:
            self._open_shard()
        self._stream.write_batch(canonical_batch(rows))
        self._shard_bytes += payload_bytes
        self._shard_docs += rows.num_rows
        for source, tokens in zip(rows.column("source").to_pylist(), rows.column("n_tokens").to_pylist(), strict=True):
            self._docs_by_source[source] += 1
            self._tokens_by_source[source] += tokens

    def _close_shard(self) -> None:
        if self._stream is None:
            return
        self._stream.close()
        self._sink.close()
        self._parts[-1] = (self._parts[-1][0], self._docs_by_source, self._tokens_by_source)
        self._stream = self._sink = None
        self._shard_bytes = self._shard_docs = 0
        self._docs_by_source, self._tokens_by_source = Counter(), Counter()

    def close(self) -> list[ShardFile]:
        """Flush, name the shards ``data-0000i-of-000NN.arrow`` and write the HF metadata files."""
        self._drain(final=True)
        self._close_shard()
        if not self._parts:
            self._open_shard()  # an empty split is one schema-only shard, so it still loads (zero rows)
            self._close_shard()
        total = len(self._parts)
        shards = []
        for index, (part, documents, tokens) in enumerate(self._parts):
            final = self.directory / f"data-{index:05d}-of-{total:05d}.arrow"
            os.replace(part, final)
            shards.append(
                ShardFile(
                    path=final,
                    split=self.split,
                    sha256=sha256_file(final),
                    documents=sum(documents.values()),
                    tokens=sum(tokens.values()),
                    documents_by_source=dict(sorted(documents.items())),
                    tokens_by_source=dict(sorted(tokens.items())),
                )
            )
        self._write_metadata(shards)
        return shards

    def _write_metadata(self, shards: list[ShardFile]) -> None:
        info = asdict(self.info)
        # The same two files, key order and indentation as ``Dataset.save_to_disk``.
        with (self.directory / "dataset_info.json").open("w", encoding="utf-8") as fh:
            json.dump({key: info[key] for key in sorted(info)}, fh, indent=2)
        state = {
            "_data_files": [{"filename": s.path.name} for s in shards],
            # save_to_disk's fingerprint is random per process; ours is a digest of the shard contents.
            "_fingerprint": merkle_root({s.path.name: s.sha256 for s in shards})[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": self.split,
        }
        with (self.directory / "state.json").open("w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2, sort_keys=True)
