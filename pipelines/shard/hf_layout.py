"""Shards in the layout of HF ``Dataset.save_to_disk``, written by us so every byte is deterministic.

A split directory holds ``data-00000-of-000NN.arrow`` (Arrow IPC *stream* files, which ``load_from_disk``
memory-maps), ``dataset_info.json`` and ``state.json``, exactly as ``save_to_disk`` writes them, so
``datasets.load_from_disk(shards/<split>)`` works (``load_from_disk(shards)`` too, given ``dataset_dict.json``)
and a trainer can also stream the files with plain pyarrow.  Writing them ourselves instead of calling
``save_to_disk`` fixes what that leaves to chance: the fingerprint (random there, a digest of the shard files
here), the record-batch boundaries (here every ``ROWS_PER_RECORD_BATCH`` rows, whatever batches arrive) and
the shard boundaries (here by a row's payload bytes against the target shard size, so the same rows always
cut the same way).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.utils.py_utils import asdict

from medcurate.core.hashing import merkle_root, sha256_file
from pipelines.shard.progress import BuildProgress, ShardFile

# Same as ``save_to_disk``'s default writer batch size.
ROWS_PER_RECORD_BATCH = 1000

# rows -> (documents by source, tokens by source): each shard mode counts its own rows.
Tally = Callable[[pa.Table], tuple[Counter[str], Counter[str]]]


def row_payload_bytes(table: pa.Table) -> np.ndarray:
    """Per row, the bytes its values take in Arrow (strings, token ids, fixed-width columns, offsets).

    Depends only on the row's content, so shard cuts do not depend on how Ray batched the rows.
    """
    sizes = np.zeros(table.num_rows, dtype=np.int64)
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            sizes += pc.binary_length(column).to_numpy(zero_copy_only=False) + 4
        elif pa.types.is_list(field.type) and pa.types.is_string(field.type.value_type):
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            flat = column.combine_chunks() if table.num_rows else pa.array([], field.type)
            owner = pc.list_parent_indices(flat).to_numpy(zero_copy_only=False)
            chars = pc.binary_length(pc.list_flatten(flat)).to_numpy(zero_copy_only=False)
            sizes += np.bincount(owner, weights=chars, minlength=table.num_rows).astype(np.int64) + lengths * 4 + 4
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

    Shard cuts depend only on the rows (their payload bytes against the target), never on how they arrive,
    and a shard always starts with an empty writer state.  That is what makes a build resumable: given the
    shards an earlier attempt completed (``progress``), the writer drops that many rows from the front of the
    same row stream and carries on at the next shard index, producing the bytes an uninterrupted build would.

    A shard in progress is ``.part-0000i.arrow.tmp``; complete, ``part-0000i.arrow`` plus its completion
    record; at ``close``, when the count is known, ``data-0000i-of-000NN.arrow``.
    """

    def __init__(
        self,
        directory: Path,
        split: str,
        schema: pa.Schema,
        target_shard_bytes: int,
        description: str,
        tally: Tally,
        progress: BuildProgress | None = None,
        *,
        license: str = "",
        citation: str = "",
    ) -> None:
        self.directory = directory
        self.split = split
        self.target_shard_bytes = target_shard_bytes
        self.tally = tally
        self.progress = progress
        # Licence and citation go into every split's dataset_info.json: a split copied alone keeps its terms.
        self.info = datasets.DatasetInfo(
            description=description,
            license=license,
            citation=citation,
            features=datasets.Features.from_arrow_schema(schema),
        )
        self.schema = schema.with_metadata(
            {"huggingface": json.dumps({"info": {"features": asdict(self.info)["features"]}})}
        )
        self._pending: pa.Table = self.schema.empty_table()
        self._pending_bytes = np.zeros(0, dtype=np.int64)
        self._shards: list[ShardFile] = progress.completed_shards(split) if progress else []
        self.reused = len(self._shards)
        # Rows of the stream that completed shards already hold: dropped as they arrive again.
        self._skip = self._shards[-1].rows_end if self._shards else 0
        self._next_row = self._skip
        self._stream: pa.ipc.RecordBatchStreamWriter | None = None
        self._sink: pa.OSFile | None = None
        self._shard_rows = 0
        self._shard_bytes = 0
        self._documents: Counter[str] = Counter()
        self._tokens: Counter[str] = Counter()
        directory.mkdir(parents=True, exist_ok=True)
        keep = {shard.path.name for shard in self._shards}
        for leftover in directory.iterdir():  # unfinished shards and files of an interrupted close
            if leftover.name not in keep:
                leftover.unlink()

    @property
    def written(self) -> int:
        """Shards this writer wrote itself (not reused from an earlier attempt)."""
        return len(self._shards) - self.reused

    def write(self, table: pa.Table) -> None:
        if self._skip:
            dropped = min(self._skip, table.num_rows)
            table, self._skip = table.slice(dropped), self._skip - dropped
        rows = table.select(self.schema.names).cast(self.schema)
        self._pending = pa.concat_tables([self._pending, rows])
        self._pending_bytes = np.concatenate([self._pending_bytes, row_payload_bytes(rows)])
        self._drain(final=False)

    def _drain(self, *, final: bool) -> None:
        while self._pending.num_rows:
            cumulative = np.cumsum(self._pending_bytes)
            fit = int(np.searchsorted(cumulative, self.target_shard_bytes - self._shard_bytes, side="right"))
            if not self._shard_rows:
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

    def _temporary_path(self) -> Path:
        return self.directory / f".part-{len(self._shards):05d}.arrow.tmp"

    def _append(self, rows: pa.Table, payload_bytes: int) -> None:
        if self._stream is None:
            self._sink = pa.OSFile(str(self._temporary_path()), "wb")
            self._stream = pa.ipc.new_stream(self._sink, self.schema)
        self._stream.write_batch(canonical_batch(rows))
        self._shard_bytes += payload_bytes
        self._shard_rows += rows.num_rows
        documents, tokens = self.tally(rows)
        self._documents.update(documents)
        self._tokens.update(tokens)

    def _close_shard(self) -> None:
        """Finish the open shard: rename it to its complete name, then record it."""
        if self._stream is None:
            return
        self._stream.close()
        self._sink.close()
        self._stream = self._sink = None
        path = self.directory / f"part-{len(self._shards):05d}.arrow"
        os.replace(self._temporary_path(), path)
        shard = ShardFile(
            path=path,
            split=self.split,
            index=len(self._shards),
            sha256=sha256_file(path),
            rows_start=self._next_row,
            rows=self._shard_rows,
            documents=sum(self._documents.values()),
            tokens=sum(self._tokens.values()),
            documents_by_source=dict(sorted(self._documents.items())),
            tokens_by_source=dict(sorted(self._tokens.items())),
        )
        if self.progress is not None:
            self.progress.record_shard(shard)
        self._shards.append(shard)
        self._next_row += self._shard_rows
        self._shard_rows = self._shard_bytes = 0
        self._documents, self._tokens = Counter(), Counter()

    def close(self) -> list[ShardFile]:
        """Flush, name the shards ``data-0000i-of-000NN.arrow`` and write the HF metadata files."""
        self._drain(final=True)
        self._close_shard()
        if not self._shards:
            # An empty split is one schema-only shard, so it still loads (zero rows).
            self._sink = pa.OSFile(str(self._temporary_path()), "wb")
            self._stream = pa.ipc.new_stream(self._sink, self.schema)
            self._close_shard()
        total = len(self._shards)
        shards = []
        for shard in self._shards:
            final = self.directory / f"data-{shard.index:05d}-of-{total:05d}.arrow"
            os.replace(shard.path, final)
            shards.append(replace(shard, path=final))
        self.write_metadata(shards)
        return shards

    def write_metadata(self, shards: list[ShardFile]) -> None:
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


def write_dataset_dict(root: Path, splits: list[str]) -> Path:
    """``dataset_dict.json`` as ``DatasetDict.save_to_disk`` writes it: ``load_from_disk(root)`` then returns
    a ``DatasetDict`` of the split directories, in spec order."""
    path = root / "dataset_dict.json"
    path.write_text(json.dumps({"splits": splits}), encoding="utf-8")
    return path


def split_schema(split_dir: Path) -> pa.Schema:
    """The columns of a written split, read from its first shard (without its HF metadata)."""
    first = json.loads((split_dir / "state.json").read_text(encoding="utf-8"))["_data_files"][0]["filename"]
    with pa.ipc.open_stream(pa.memory_map(str(split_dir / first))) as stream:
        return stream.schema.remove_metadata()
