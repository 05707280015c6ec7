"""Tokenization, on Ray actors or in the driver: curated Parquet batches in, one row per document copy with its
split and ids out.

``TokenizeDocuments`` is the body of one tokenizer per CPU (the driver itself when that is one, else one Ray
actor each): it parses the tokenizer once and keeps it for every batch it gets.  It also applies the spec's
mixing weights (``mixing.py``): a sampled-out document is not tokenized at all, an up-weighted one comes out
once per copy.  Every input document yields at least one row, so the driver counts what was kept and dropped
and why (``drop_reason``) without a second pass.

The driver reads the curated files itself (sorted by path, rows in file order; decoding Parquet costs a few
percent of tokenizing it) and ``tokenized_batches`` gives back the tokenized batches in that same order, so
everything downstream (shard contents, boundaries, digests) is a function of the input alone, whatever the
number of tokenizers (the actor pool is ``medcurate.core.actor_pool``, which also says why not Ray Data).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from medcurate.core.actor_pool import actor_count, ordered_actor_map
from pipelines.shard.mixing import batch_copies
from pipelines.shard.splits import SPLIT_KEY_COLUMNS, batch_splits

INPUT_COLUMNS = sorted({"source", "text", *SPLIT_KEY_COLUMNS})
# Rows per actor call: big enough that a call's fixed cost (a round trip, an object-store copy each way) is
# lost in its tokenization time, small enough to spread a few files over every actor.
BATCH_ROWS = 1024
# Calls queued per tokenizer (an actor, or the driver's tokenizing thread): one running, one waiting so it
# never idles while the driver catches up.
QUEUED_PER_TOKENIZER = 2
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
    """Actor body: pyarrow batch of curated documents -> pyarrow table of tokenized rows.

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
        # One tokenizer thread per actor (it holds one CPU).  Set here rather than through a Ray runtime_env:
        # an actor with a runtime_env waits for the runtime-env agent and gets a worker process of its own,
        # ~2 s more start-up per actor (measured on the 2-core machine).  ``tokenizers`` reads the variable
        # at each batch call, so setting it before the first call is enough.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.prefix = [bos_id] if bos_id is not None else []
        self.suffix = [eos_id] if eos_id is not None else []
        self.schema = tokenized_schema(token_id_type(vocab_size))
        self.splits = dict(splits)
        self.mixing = dict(mixing)

    def tokenize(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        doc_ids = batch.column("doc_id").to_pylist()
        splits = batch_splits(batch, self.splits)
        copies = batch_copies(doc_ids, batch.column("source").to_pylist(), splits, self.mixing)
        drop_reason: list[str | None] = [None if c else SAMPLED_OUT for c in copies]
        wanted = np.flatnonzero(copies > 0)
        texts = batch.column("text")
        if len(wanted) < len(doc_ids):
            texts = texts.take(pa.array(wanted, pa.int64()))
        encodings = self.tokenizer.encode_batch_fast(texts.to_pylist(), add_special_tokens=False)
        # One flat list of every kept document's ids, converted to numpy once: the ids are Python ints
        # already (``Encoding.ids``), and a per-document list or ``np.fromiter`` cost more than the copy.
        lengths = np.zeros(len(doc_ids), dtype=np.int32)
        values: list[int] = []
        boundary_tokens = len(self.prefix) + len(self.suffix)
        for row, encoding in zip(wanted.tolist(), encodings, strict=True):
            ids = encoding.ids
            if ids:
                values += self.prefix
                values += ids
                values += self.suffix
                lengths[row] = len(ids) + boundary_tokens
            else:
                drop_reason[row] = EMPTY_AFTER_TOKENIZATION
        offsets = np.zeros(len(doc_ids) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        id_type = self.schema.field("input_ids").type.value_type
        columns = {
            "doc_id": batch.column("doc_id"),
            "source": batch.column("source"),
            "source_kind": batch.column("source_kind"),
            "split": pa.array(splits, pa.string()),
            "input_ids": pa.ListArray.from_arrays(
                pa.array(offsets), pa.array(np.array(values, dtype=id_type.to_pandas_dtype()), id_type)
            ),
            "n_tokens": pa.array(lengths, pa.int32()),
            "drop_reason": pa.array(drop_reason, pa.string()),
        }
        # A dropped document is reported once; a kept one once per copy.
        rows_per_doc = np.where([reason is None for reason in drop_reason], copies, 1)
        if (rows_per_doc == 1).all():  # no mixing copies: every row once, nothing to gather
            documents = pa.table(columns | {"repeat": pa.array(np.zeros(len(doc_ids), np.int32))})
        else:
            take = np.repeat(np.arange(len(doc_ids)), rows_per_doc)
            repeat = np.arange(len(take)) - np.repeat(np.cumsum(rows_per_doc) - rows_per_doc, rows_per_doc)
            documents = pa.table(columns).take(pa.array(take, pa.int64()))
            documents = documents.append_column("repeat", pa.array(repeat, pa.int32()))
        return documents.select(self.schema.names).cast(self.schema)


def curated_batches(parquet_files: list[Path], batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
    """The columns the tokenizer needs, ``batch_rows`` (default ``BATCH_ROWS``) rows at a time, files in the
    order given."""
    for path in parquet_files:
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows or BATCH_ROWS, columns=INPUT_COLUMNS)


def tokenized_batches(
    batches: Iterable[pa.RecordBatch],
    tokenizer_json: str,
    *,
    bos_id: int | None,
    eos_id: int | None,
    vocab_size: int,
    splits: Mapping[str, float],
    mixing: Mapping[str, float],
    workers: int | None = None,
) -> Iterator[pa.Table]:
    """Each batch tokenized, in input order, by ``actor_count(workers)`` tokenizers; call inside
    ``ray_session()`` unless that is 1.

    One tokenizer is the driver itself: an actor would only add a worker process to start (1.5-3 s), a copy
    of every batch into the object store and back, and Ray's services running beside it, for no parallelism.

    More: a pool of actors (``ordered_actor_map``).  Each actor tokenizes on one thread: it holds one CPU, and
    the tokenizer's own thread pool would make N actors fight over N cores.  Until the first actor is up, the
    driver tokenizes batches itself with the same ``TokenizeDocuments`` body.  A set number of ``workers`` (the
    spec's ``parallel.workers``) is a request to run the work on that many actors (on a cluster, spread over
    its nodes), so then the driver only feeds them.
    """
    arguments = (tokenizer_json, bos_id, eos_id, vocab_size, dict(splits), dict(mixing))
    count = actor_count(workers)
    if count == 1:
        yield from _driver_batches(batches, arguments)
    else:
        local = _DriverTokenizer(arguments).tokenize if workers is None else None
        yield from ordered_actor_map(
            batches, TokenizeDocuments, arguments, "tokenize", count, queued_per_actor=QUEUED_PER_TOKENIZER, local=local
        )


def _driver_batches(batches: Iterable[pa.RecordBatch], arguments: tuple) -> Iterator[pa.Table]:
    """``tokenized_batches`` with one tokenizer, in the driver, on a thread of its own: ``encode_batch_fast``
    releases the GIL, so reading the next batches and writing the last one's rows overlap with tokenizing (as
    they do with an actor), and the tokenizer never waits for the writer."""
    driver = _DriverTokenizer(arguments)
    calls: deque[Future[pa.Table]] = deque()  # oldest first
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") as tokenizer:
        for batch in batches:
            if len(calls) == QUEUED_PER_TOKENIZER:
                yield calls.popleft().result()
            calls.append(tokenizer.submit(driver.tokenize, batch))
        while calls:
            yield calls.popleft().result()


class _DriverTokenizer:
    """``TokenizeDocuments`` in the driver, single-threaded like an actor, without touching the driver's
    environment for longer than a call (a later stage may train a tokenizer on every core)."""

    def __init__(self, arguments: tuple) -> None:
        with _single_threaded_tokenizers():
            self.body = TokenizeDocuments(*arguments)

    def tokenize(self, batch: pa.RecordBatch) -> pa.Table:
        with _single_threaded_tokenizers():
            return self.body.tokenize(batch)


@contextmanager
def _single_threaded_tokenizers() -> Iterator[None]:
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous
