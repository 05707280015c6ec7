"""Mode ``packed``: a split's ordered document stream cut into fixed ``seq_len`` token sequences.

Sequence ``j`` of a split is tokens ``[j * seq_len, (j + 1) * seq_len)`` of its documents' token ids laid end
to end (each with its BOS/EOS), so no token is dropped or padded and concatenating the sequences gives back
the stream.  Only the split's last sequence may be shorter.  A document that does not fit continues at the
start of the next sequence.  Each row keeps where its documents start and end so a trainer can reset
positions and mask attention at every boundary:

* ``cu_seqlens``: segment offsets inside the sequence, from 0 to ``n_tokens`` (the layout of FlashAttention's
  variable-length kernels); segment ``i`` is ``input_ids[cu_seqlens[i]:cu_seqlens[i + 1]]``;
* ``doc_ids``, ``doc_repeats``, ``sources``: the document (and mixing copy) of each segment;
* ``doc_token_starts``: where in its document's ids each segment begins (0: the document starts here;
  more: it continues from the previous sequence).

The cut points of every batch are computed at once with numpy, never token by token.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def packed_schema(id_type: pa.DataType) -> pa.Schema:
    return pa.schema(
        [
            pa.field("split", pa.string()),
            pa.field("input_ids", pa.list_(id_type)),
            pa.field("n_tokens", pa.int32()),
            pa.field("cu_seqlens", pa.list_(pa.int32())),
            pa.field("doc_ids", pa.list_(pa.string())),
            pa.field("doc_repeats", pa.list_(pa.int32())),
            pa.field("sources", pa.list_(pa.string())),
            pa.field("doc_token_starts", pa.list_(pa.int32())),
        ]
    )


class Packer:
    """Turns batches of one split's document rows (in stream order) into packed sequence rows.

    Holds at most one unfinished sequence between batches: the tail tokens and their segments.
    """

    def __init__(self, split: str, seq_len: int, id_type: pa.DataType) -> None:
        self.split = split
        self.seq_len = seq_len
        self.schema = packed_schema(id_type)
        self._dtype = id_type.to_pandas_dtype()
        self._tokens = np.zeros(0, dtype=self._dtype)
        self._doc_ids = pa.array([], pa.string())
        self._repeats = np.zeros(0, dtype=np.int32)
        self._sources = pa.array([], pa.string())
        self._lengths = np.zeros(0, dtype=np.int64)
        self._doc_starts = np.zeros(0, dtype=np.int64)

    def add(self, documents: pa.Table) -> pa.Table:
        """The sequences these documents complete (documents need input_ids, n_tokens, doc_id, repeat, source)."""
        if documents.num_rows:
            ids = documents.column("input_ids").combine_chunks()
            self._tokens = np.concatenate([self._tokens, pc.list_flatten(ids).to_numpy(zero_copy_only=False)])
            self._doc_ids = pa.concat_arrays([self._doc_ids, documents.column("doc_id").combine_chunks()])
            self._repeats = np.concatenate([self._repeats, documents.column("repeat").to_numpy()])
            self._sources = pa.concat_arrays([self._sources, documents.column("source").combine_chunks()])
            self._lengths = np.concatenate([self._lengths, documents.column("n_tokens").to_numpy().astype(np.int64)])
            self._doc_starts = np.concatenate([self._doc_starts, np.zeros(documents.num_rows, dtype=np.int64)])
        return self._cut(len(self._tokens) // self.seq_len * self.seq_len)

    def finish(self) -> pa.Table:
        """The last, possibly shorter, sequence of the split (no rows when nothing is left)."""
        return self._cut(len(self._tokens))

    def _cut(self, end: int) -> pa.Table:
        """Emit the sequences covering tokens ``[0, end)`` and keep the rest for the next call."""
        if end == 0:
            return self.schema.empty_table()
        seq_len = self.seq_len
        cum = np.concatenate([[0], np.cumsum(self._lengths)])
        seq_starts = np.arange(0, end, seq_len)
        n_seq = len(seq_starts)
        seq_lengths = np.minimum(seq_starts + seq_len, end) - seq_starts
        # Pieces: the stream between consecutive cut points (document boundaries and sequence starts).
        piece_starts = np.union1d(cum[cum < end], seq_starts)
        segment = np.searchsorted(cum, piece_starts, side="right") - 1
        sequence = piece_starts // seq_len
        per_sequence = np.bincount(sequence, minlength=n_seq)
        offsets = np.concatenate([[0], np.cumsum(per_sequence)]).astype(np.int32)
        # cu_seqlens: each piece's start inside its sequence, then the sequence's length.
        cu_offsets = offsets + np.arange(n_seq + 1, dtype=np.int32)
        cu_values = np.empty(len(piece_starts) + n_seq, dtype=np.int32)
        cu_values[np.arange(len(piece_starts)) + sequence] = piece_starts - sequence * seq_len
        cu_values[cu_offsets[1:] - 1] = seq_lengths
        take = pa.array(segment, pa.int64())
        table = pa.table(
            {
                "split": pa.array([self.split] * n_seq, pa.string()),
                "input_ids": pa.ListArray.from_arrays(
                    pa.array(np.append(seq_starts, end).astype(np.int32)), pa.array(self._tokens[:end])
                ),
                "n_tokens": pa.array(seq_lengths.astype(np.int32)),
                "cu_seqlens": pa.ListArray.from_arrays(pa.array(cu_offsets), pa.array(cu_values)),
                "doc_ids": pa.ListArray.from_arrays(pa.array(offsets), self._doc_ids.take(take)),
                "doc_repeats": pa.ListArray.from_arrays(pa.array(offsets), pa.array(self._repeats[segment])),
                "sources": pa.ListArray.from_arrays(pa.array(offsets), self._sources.take(take)),
                "doc_token_starts": pa.ListArray.from_arrays(
                    pa.array(offsets),
                    pa.array((self._doc_starts[segment] + piece_starts - cum[segment]).astype(np.int32)),
                ),
            },
            schema=self.schema,
        )
        self._keep_from(end, cum)
        return table

    def _keep_from(self, end: int, cum: np.ndarray) -> None:
        """Drop the emitted tokens; the document ``end`` falls inside keeps its remainder as a continuation."""
        first = int(np.searchsorted(cum, end, side="right")) - 1 if end < cum[-1] else len(self._lengths)
        consumed = end - cum[first] if first < len(self._lengths) else 0
        self._tokens = self._tokens[end:].copy()
        self._doc_ids = self._doc_ids.slice(first)
        self._repeats = self._repeats[first:]
        self._sources = self._sources.slice(first)
        self._lengths = self._lengths[first:].copy()
        self._doc_starts = self._doc_starts[first:].copy()
        if len(self._lengths):
            self._lengths[0] -= consumed
            self._doc_starts[0] += consumed


def packed_tally(rows: pa.Table) -> tuple[Counter[str], Counter[str]]:
    """Documents that start in these sequences, and tokens, by source (a continuation is not counted again)."""
    sources = pc.list_flatten(rows.column("sources")).to_pylist()
    starts = pc.list_flatten(rows.column("doc_token_starts")).to_numpy(zero_copy_only=False)
    cu = rows.column("cu_seqlens").combine_chunks()
    bounds = pc.list_flatten(cu).to_numpy(zero_copy_only=False).astype(np.int64)
    owner = pc.list_parent_indices(cu).to_numpy(zero_copy_only=False)
    segment_tokens = np.diff(bounds)[owner[1:] == owner[:-1]]
    documents: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    for source, start, n in zip(sources, starts.tolist(), segment_tokens.tolist(), strict=True):
        documents[source] += start == 0
        tokens[source] += n
    return documents, tokens
