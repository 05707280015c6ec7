"""Tokenization on Ray Data: curated Parquet in, one row per document copy with its split and token ids out.

``TokenizeDocuments`` is a callable class so each Ray actor parses the tokenizer once and keeps it for all
the batches it gets.  It also applies the spec's mixing weights (``mixing.py``): a sampled-out document is not
tokenized at all, an up-weighted one comes out once per copy.  Every input document yields at least one row,
so the driver counts what was kept and dropped and why (``drop_reason``) without a second pass.

Ray would hand batches over in whatever order its workers finish; ``tokenized_documents`` has Ray Data
preserve the input order instead (curated files sorted by path, rows in file order), so everything downstream
(shard contents, boundaries, digests) is a function of the input alone.  Preserving the order streams: Ray
holds back only the batches that finished ahead of an earlier one, where a global sort would first have to
materialize the whole tokenized corpus in the object store.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer

from pipelines.shard.mixing import batch_copies
from pipelines.shard.splits import SPLIT_KEY_COLUMNS, batch_splits

INPUT_COLUMNS = sorted({"source", "text", *SPLIT_KEY_COLUMNS})
# Rows per tokenizer call: big enough for the Rust batch encoder to pay off, small enough to spread work.
BATCH_ROWS = 256
# Why a document row is not written (null: written).
EMPTY_AFTER_TOKENIZATION = "empty_after_tokenization"
SAMPLED_OUT = "mixing_sampled_out"


def token_id_type(vocab_size: int) -> pa.DataType:
    """The narrowest unsigned type that holds every token id: halves the shards for vocabularies <= 65536."""
    return pa.uint16() if vocab_size <= 1 << 16 else pa.uint32()


def document_schema(id_type: pa.DataType) -> pa.Schema:
    """Columns of a ``documents``-mode shard row; ``n_tokens`` counts BOS/EOS too, ``repeat`` numbers the
    copies the mixing weights made (0 for the first, so ``(doc_id, repeat)`` is unique)."""
    return pa.schema(
        [
            pa.field("doc_id", pa.string()),
            pa.field("source", pa.string()),
            pa.field("source_kind", pa.string()),
            pa.field("split", pa.string()),
            pa.field("repeat", pa.int32()),
            pa.field("input_ids", pa.list_(id_type)),
            pa.field("n_tokens", pa.int32()),
        ]
    )


def tokenized_schema(id_type: pa.DataType) -> pa.Schema:
    """What the tokenizer hands the driver: the shard columns and the drop reason."""
    return document_schema(id_type).append(pa.field("drop_reason", pa.string()))


class TokenizeDocuments:
    """Ray Data map_batches UDF: pyarrow batch of curated documents -> pyarrow batch of tokenized rows.

    A document sampled out by the mixing weights, or whose text yields no tokens, comes out once with no ids
    and its ``drop_reason``: the driver counts it as removed instead of writing a row that holds only
    boundary markers.
    """

    def __init__(
        self,
        tokenizer_json: str,
        bos_id: int | None,
        eos_id: int | None,
        vocab_size: int,
        splits: Mapping[str, float],
        mixing: Mapping[str, float],
    ) -> None:
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.prefix = [bos_id] if bos_id is not None else []
        self.suffix = [eos_id] if eos_id is not None else []
        self.schema = tokenized_schema(token_id_type(vocab_size))
        self.splits = dict(splits)
        self.mixing = dict(mixing)

    def __call__(self, batch: pa.Table) -> pa.Table:
        doc_ids = batch.column("doc_id").to_pylist()
        splits = batch_splits(batch, self.splits)
        copies = batch_copies(doc_ids, batch.column("source").to_pylist(), splits, self.mixing)
        drop_reason: list[str | None] = [None if c else SAMPLED_OUT for c in copies]
        wanted = np.flatnonzero(copies > 0)
        encodings = self.tokenizer.encode_batch_fast(
            batch.column("text").take(pa.array(wanted, pa.int64())).to_pylist(), add_special_tokens=False
        )
        ids: list[list[int]] = [[] for _ in doc_ids]
        for row, encoding in zip(wanted.tolist(), encodings, strict=True):
            if encoding.ids:
                ids[row] = self.prefix + encoding.ids + self.suffix
            else:
                drop_reason[row] = EMPTY_AFTER_TOKENIZATION
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int32, count=len(ids))
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int32)
        id_type = self.schema.field("input_ids").type.value_type
        values = np.fromiter(
            itertools.chain.from_iterable(ids), dtype=id_type.to_pandas_dtype(), count=int(offsets[-1])
        )
        # A dropped document is reported once; a kept one once per copy.
        rows_per_doc = np.where([reason is None for reason in drop_reason], copies, 1)
        take = np.repeat(np.arange(len(doc_ids)), rows_per_doc)
        repeat = np.arange(len(take)) - np.repeat(np.cumsum(rows_per_doc) - rows_per_doc, rows_per_doc)
        documents = pa.table(
            {
                "doc_id": batch.column("doc_id"),
                "source": batch.column("source"),
                "source_kind": batch.column("source_kind"),
                "split": pa.array(splits, pa.string()),
                "input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, id_type)),
                "n_tokens": pa.array(lengths, pa.int32()),
                "drop_reason": pa.array(drop_reason, pa.string()),
            }
        ).take(pa.array(take, pa.int64()))
        return (
            documents.append_column("repeat", pa.array(repeat, pa.int32())).select(self.schema.names).cast(self.schema)
        )


def tokenized_documents(
    parquet_files: list[Path],
    tokenizer_json: str,
    *,
    bos_id: int | None,
    eos_id: int | None,
    vocab_size: int,
    splits: Mapping[str, float],
    mixing: Mapping[str, float],
):
    """A Ray Dataset of tokenized rows in input order; call inside ``ray_session()``.

    The actor pool grows to the cluster's CPUs minus one, leaving a CPU for the read tasks that feed it (an
    actor pool holding every CPU would starve them).
    """
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    documents = ray.data.read_parquet([str(p) for p in parquet_files], columns=INPUT_COLUMNS)
    # Settings on this dataset's own context copy: other stages in the same process keep theirs.
    documents.context.execution_options.preserve_order = True
    documents.context.enable_progress_bars = False
    return documents.map_batches(
        TokenizeDocuments,
        fn_constructor_kwargs={
            "tokenizer_json": tokenizer_json,
            "bos_id": bos_id,
            "eos_id": eos_id,
            "vocab_size": vocab_size,
            "splits": dict(splits),
            "mixing": dict(mixing),
        },
        batch_size=BATCH_ROWS,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, cpus - 1)),
        num_cpus=1,
    )
