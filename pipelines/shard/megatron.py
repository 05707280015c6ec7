"""Export a split to the Megatron-LM indexed dataset format (``PREFIX.bin`` + ``PREFIX.idx``).

``.bin`` holds every document's token ids back to back.  ``.idx`` (format "MMIDIDX", version 1, as
``megatron.core.datasets.indexed_dataset`` writes and reads it), all little-endian:

* the 9-byte magic ``MMIDIDX\\x00\\x00``, then version ``<Q`` = 1 and the dtype code ``<B``;
* the sequence count and the document index count, ``<Q`` each;
* sizes: tokens per sequence, int32; pointers: byte offset of each sequence in ``.bin``, int64;
* document index: int64, ``[0, 1, ..., n]``: one sequence per document.

Megatron does its own packing across documents, so both shard modes export documents: a packed split's
segments are joined back into whole documents (a segment with ``doc_token_starts == 0`` opens one).  The
bytes of ``.bin`` are then simply the split's token stream.  Megatron has no unsigned 32-bit code: ids of
a vocabulary above 65536 are written as int32.  Both files are written under temporary names and renamed
when complete.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medcurate.core.zones import temporary_path
from pipelines.shard.reader import split_files

INDEX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
# Megatron's DType codes (megatron.core.datasets.indexed_dataset.DType).
DTYPE_CODES = {
    np.dtype(name): code
    for code, name in enumerate(("uint8", "int8", "int16", "int32", "int64", "float64", "float32", "uint16"), 1)
}


def _segments(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """Token count of each document segment in the batch, and where in its document each one starts.

    A ``documents`` row is one whole segment; a ``packed`` row holds the segments its ``cu_seqlens`` delimit.
    """
    if "cu_seqlens" not in batch.schema.names:
        lengths = batch.column("n_tokens").to_numpy().astype(np.int64)
        return lengths, np.zeros(len(lengths), dtype=np.int64)
    cu = batch.column("cu_seqlens")
    bounds = pc.list_flatten(cu).to_numpy(zero_copy_only=False).astype(np.int64)
    owner = pc.list_parent_indices(cu).to_numpy(zero_copy_only=False)
    starts = pc.list_flatten(batch.column("doc_token_starts")).to_numpy(zero_copy_only=False)
    return np.diff(bounds)[owner[1:] == owner[:-1]], starts


class _DocumentSizes:
    """Joins segments into document sizes across batches; the last document stays open until the next starts."""

    def __init__(self) -> None:
        self.closed: list[np.ndarray] = []
        self.open: int | None = None

    def add(self, segments: np.ndarray, starts: np.ndarray) -> None:
        if not len(segments):
            return
        document = np.cumsum(starts == 0)  # 0: continues the open document
        per_document = np.bincount(document, weights=segments).astype(np.int64)
        if document[0] == 0:
            if self.open is None:
                raise ValueError("the split starts in the middle of a document")
            self.open += int(per_document[0])
        if len(per_document) > 1:
            if self.open is not None:
                self.closed.append(np.array([self.open]))
            self.closed.append(per_document[1:-1])
            self.open = int(per_document[-1])

    def finish(self) -> np.ndarray:
        if self.open is not None:
            self.closed.append(np.array([self.open]))
            self.open = None
        return np.concatenate(self.closed).astype(np.int64) if self.closed else np.zeros(0, dtype=np.int64)


class NotASplitDir(ValueError):
    """The path given is not one split's directory; the message says which path to give instead."""


def require_split_dir(path: Path) -> None:
    """Refuse the shards folder (or any directory without ``state.json``) with the splits it holds.

    Megatron's indexed dataset is one split's token stream, so the shards folder itself cannot be exported.
    """
    if (path / "state.json").is_file():
        return
    splits = sorted(state.parent.name for state in path.glob("*/state.json"))
    if splits:
        raise NotASplitDir(f"{path} holds the splits {', '.join(splits)}: name one, e.g. {path / splits[0]}")
    raise NotASplitDir(f"{path} is not a shard split directory (no state.json), e.g. DATA_ROOT/shards/train")


def export_megatron(split_dir: str | Path, out_prefix: str | Path) -> dict[str, int | str]:
    """Write ``out_prefix.bin`` / ``.idx`` for the split in ``split_dir``; returns documents, tokens, dtype."""
    require_split_dir(Path(split_dir))
    files = split_files(Path(split_dir))
    id_type = pa.ipc.open_stream(pa.memory_map(str(files[0]))).schema.field("input_ids").type.value_type
    dtype = np.dtype(np.uint16) if id_type == pa.uint16() else np.dtype(np.int32)
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    bin_path, idx_path = out_prefix.with_name(out_prefix.name + ".bin"), out_prefix.with_name(out_prefix.name + ".idx")
    bin_tmp, idx_tmp = temporary_path(bin_path), temporary_path(idx_path)

    sizes = _DocumentSizes()
    with bin_tmp.open("wb") as out:
        for path in files:
            with pa.ipc.open_stream(pa.memory_map(str(path))) as stream:
                for batch in stream:
                    ids = pc.list_flatten(batch.column("input_ids")).to_numpy(zero_copy_only=False)
                    out.write(ids.astype(dtype).tobytes())
                    sizes.add(*_segments(batch))
    document_sizes = sizes.finish()
    pointers = np.concatenate([[0], np.cumsum(document_sizes)[:-1]]) * dtype.itemsize
    with idx_tmp.open("wb") as out:
        out.write(INDEX_HEADER)
        out.write(struct.pack("<Q", INDEX_VERSION))
        out.write(struct.pack("<B", DTYPE_CODES[dtype]))
        out.write(struct.pack("<Q", len(document_sizes)))
        out.write(struct.pack("<Q", len(document_sizes) + 1))
        out.write(document_sizes.astype("<i4").tobytes())
        out.write(pointers.astype("<i8").tobytes())
        out.write(np.arange(len(document_sizes) + 1, dtype="<i8").tobytes())
    os.replace(bin_tmp, bin_path)
    os.replace(idx_tmp, idx_path)
    return {"documents": len(document_sizes), "tokens": int(document_sizes.sum()), "dtype": dtype.name}
