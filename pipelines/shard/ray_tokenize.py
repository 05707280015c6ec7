"""Tokenization on Ray Data: curated Parquet in, one row per document with its split and token ids out.

``TokenizeDocuments`` is a callable class so each Ray actor parses the tokenizer once and keeps it for all
the batches it gets.  Ray hands batches over in whatever order its workers finish; ``tokenized_documents``
sorts by ``doc_id`` so that everything downstream (shard contents, boundaries, digests) is a function of the
input alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer

from pipelines.shard.splits import SPLIT_KEY_COLUMNS, batch_splits

INPUT_COLUMNS = sorted({"source", "text", *SPLIT_KEY_COLUMNS})
# Rows per tokenizer call: big enough for the Rust batch encoder to pay off, small enough to spread work.
BATCH_ROWS = 256
# Curated Parquet bytes per sort partition: the partition count follows the data, where Ray's default (200
# partitions, whatever the size) costs more in task overhead than a small corpus takes to tokenize.
SORT_PARTITION_BYTES = 64 * 1024 * 1024


def token_id_type(vocab_size: int) -> pa.DataType:
    """The narrowest unsigned type that holds every token id: halves the shards for vocabularies <= 65536."""
    return pa.uint16() if vocab_size <= 1 << 16 else pa.uint32()


def document_schema(id_type: pa.DataType) -> pa.Schema:
    """Columns of a ``documents``-mode shard row; ``n_tokens`` counts BOS/EOS too."""
    return pa.schema(
        [
            pa.field("doc_id", pa.string()),
            pa.field("source", pa.string()),
            pa.field("source_kind", pa.string()),
            pa.field("split", pa.string()),
            pa.field("input_ids", pa.list_(id_type)),
            pa.field("n_tokens", pa.int32()),
        ]
    )


class TokenizeDocuments:
    """Ray Data map_batches UDF: pyarrow batch of curated documents -> pyarrow batch of shard rows.

    A document whose text yields no tokens comes out with ``n_tokens == 0`` and no ids (no BOS/EOS either),
    so the driver can count it as removed instead of writing a row that holds only boundary markers.
    """

    def __init__(
        self,
        tokenizer_json: str,
        bos_id: int | None,
        eos_id: int | None,
        vocab_size: int,
        splits: Mapping[str, float],
    ) -> None:
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.prefix = [bos_id] if bos_id is not None else []
        self.suffix = [eos_id] if eos_id is not None else []
        self.schema = document_schema(token_id_type(vocab_size))
        self.splits = dict(splits)

    def __call__(self, batch: pa.Table) -> pa.Table:
        encodings = self.tokenizer.encode_batch_fast(batch.column("text").to_pylist(), add_special_tokens=False)
        ids = [self.prefix + e.ids + self.suffix if e.ids else [] for e in encodings]
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int32, count=len(ids))
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int32)
        id_type = self.schema.field("input_ids").type.value_type
        values = np.fromiter(
            itertools.chain.from_iterable(ids), dtype=id_type.to_pandas_dtype(), count=int(offsets[-1])
        )
        return pa.table(
            {
                "doc_id": batch.column("doc_id"),
                "source": batch.column("source"),
                "source_kind": batch.column("source_kind"),
                "split": pa.array(batch_splits(batch, self.splits), pa.string()),
                "input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, id_type)),
                "n_tokens": pa.array(lengths, pa.int32()),
            },
            schema=self.schema,
        )


def tokenized_documents(
    parquet_files: list[Path],
    tokenizer_json: str,
    *,
    bos_id: int | None,
    eos_id: int | None,
    vocab_size: int,
    splits: Mapping[str, float],
):
    """A Ray Dataset of shard rows sorted by ``doc_id``; call inside ``ray_session()``.

    The actor pool grows to the cluster's CPUs minus one, leaving a CPU for the read and sort tasks that
    feed it (an actor pool holding every CPU would starve them).
    """
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    documents = ray.data.read_parquet([str(p) for p in parquet_files], columns=INPUT_COLUMNS)
    # Settings on this dataset's own context copy: other stages in the same process keep theirs.
    documents.context.default_hash_shuffle_parallelism = max(
        cpus, -(-sum(p.stat().st_size for p in parquet_files) // SORT_PARTITION_BYTES)
    )
    documents.context.enable_progress_bars = False
    return documents.map_batches(
        TokenizeDocuments,
        fn_constructor_kwargs={
            "tokenizer_json": tokenizer_json,
            "bos_id": bos_id,
            "eos_id": eos_id,
            "vocab_size": vocab_size,
            "splits": dict(splits),
        },
        batch_size=BATCH_ROWS,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, cpus - 1)),
        num_cpus=1,
        udf_modifying_row_count=False,
    ).sort("doc_id")
