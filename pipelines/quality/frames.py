"""Validation frames: the only data Great Expectations ever sees, built so that none of it can be PHI.

GX copies unexpected values into its validation results and renders them in Data Docs under
``governance/``.  Handing it the ``text`` column would publish document text there.  So each zone is reduced
to a frame of ids, enum columns and derived facts: ``text_length`` and ``text_is_blank`` stand in for the
text, identifier columns become presence markers.  Every frame has a ``row`` column (position in the
validated table) so a failure maps back to exactly one row even when ``doc_id`` is null or duplicated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.quality.id_lookup import IdLookup

# GX needs to know whether an identifier is set, never its value.
PRESENT = "<present>"
INDEX_COLUMNS = ["doc_id", "row"]


def _nullable_ints(array: pa.ChunkedArray | pa.Array) -> pd.Series:
    """Integers with nulls kept as <NA> (numpy would turn a null length into a float NaN)."""
    return pd.Series(pd.array(array.to_pylist(), dtype="Int64"))


def _presence(array: pa.ChunkedArray) -> pd.Series:
    return pc.if_else(pc.is_valid(array), PRESENT, pa.scalar(None, pa.string())).to_pandas()


def document_frame(table: pa.Table) -> pd.DataFrame:
    """Raw / de-identified documents -> doc_id, source_kind, legal_basis, text facts, identifier presence."""
    text = table.column("text")
    blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), True)
    frame = pd.DataFrame(
        {
            "row": range(table.num_rows),
            "doc_id": table.column("doc_id").to_pandas(),
            "source_kind": table.column("source_kind").to_pandas(),
            "legal_basis": table.column("legal_basis").to_pandas(),
            "text_length": _nullable_ints(pc.utf8_length(text)),
            "text_is_blank": blank.to_pandas().astype(bool),
        }
    )
    for identifier in ("patient_key", "patient_pseudonym"):
        if identifier in table.column_names:
            frame[identifier] = _presence(table.column(identifier))
    return frame


def _row_facts(rows: pa.Table) -> pd.DataFrame:
    """Per shard row: its ``cu_seqlens`` checked (starts at 0, never decreases, ends where) and its segment count."""
    cu = rows.column("cu_seqlens").combine_chunks()
    cu_len = pc.fill_null(pc.list_value_length(cu), 0).to_numpy().astype(np.int64)
    bounds = pc.list_flatten(cu).to_numpy(zero_copy_only=False).astype(np.int64)
    owner = pc.list_parent_indices(cu).to_numpy(zero_copy_only=False)
    same_row = owner[1:] == owner[:-1]
    first, last = np.r_[True, ~same_row][: len(owner)], np.r_[~same_row, True][: len(owner)]
    decreasing = np.zeros(rows.num_rows, dtype=bool)
    decreasing[owner[1:][same_row & (np.diff(bounds) < 0)]] = True
    starts_at_zero = np.zeros(rows.num_rows, dtype=bool)
    starts_at_zero[owner[first]] = bounds[first] == 0
    end = pd.Series(pd.NA, index=range(rows.num_rows), dtype="Int64")
    end.iloc[owner[last]] = bounds[last]
    n_segments = pc.fill_null(pc.list_value_length(rows.column("doc_ids")), 0).to_numpy().astype(np.int64)
    return pd.DataFrame(
        {
            "cu_seqlens_end": end,
            "cu_seqlens_valid": (cu_len >= 2) & starts_at_zero & ~decreasing,
            "segments_match_cu_seqlens": cu_len - 1 == n_segments,
        }
    )


def _segment_tokens(rows: pa.Table) -> pd.Series:
    """Tokens in each segment (the ``cu_seqlens`` differences); unknown (<NA>) when any row's counts disagree."""
    cu = rows.column("cu_seqlens").combine_chunks()
    bounds = pc.list_flatten(cu).to_numpy(zero_copy_only=False).astype(np.int64)
    owner = pc.list_parent_indices(cu).to_numpy(zero_copy_only=False)
    tokens = np.diff(bounds)[owner[1:] == owner[:-1]]
    n_segments = pc.list_flatten(rows.column("doc_ids")).length()
    if len(tokens) != n_segments:
        return pd.Series(pd.array([pd.NA] * n_segments, dtype="Int64"))
    return pd.Series(pd.array(tokens, dtype="Int64"))


def shard_segments(rows: pa.Table, curated: IdLookup) -> pd.DataFrame:
    """Shard rows (``zone_io.SHARD_ROWS``, one shard file) -> one frame row per document segment, with its row's
    facts and the facts of the segment alone; ``shard_document_facts`` adds those that compare it with the other
    segments of its document.

    A documents-mode row is one segment; a packed row has one per document piece, and a document copy
    ``(doc_id, repeat)`` may continue over several rows.  A row without segments still gets one frame row
    (doc_id null) so its row facts are validated.
    """
    doc_ids = rows.column("doc_ids").combine_chunks()
    segments = pd.DataFrame(
        {
            "shard_row": pc.list_parent_indices(doc_ids).to_numpy(zero_copy_only=False).astype(np.int64),
            "doc_id": pc.list_flatten(doc_ids).to_pandas(),
            "repeat": _nullable_ints(pc.list_flatten(rows.column("doc_repeats"))),
            "source": pc.list_flatten(rows.column("sources")).to_pandas(),
            "doc_token_start": _nullable_ints(pc.list_flatten(rows.column("doc_token_starts"))),
            "segment_tokens": _segment_tokens(rows),
        }
    )
    empty = np.flatnonzero(pc.fill_null(pc.list_value_length(doc_ids), 0).to_numpy() == 0)
    segments = pd.concat([segments, pd.DataFrame({"shard_row": empty})], ignore_index=True)
    segments = segments.sort_values("shard_row", kind="stable", ignore_index=True)
    per_row = pd.DataFrame(
        {
            "split": rows.column("split").to_pandas(),
            "split_directory": rows.column("split_directory").to_pandas(),
            "n_tokens": _nullable_ints(rows.column("n_tokens")),
            "input_ids_length": _nullable_ints(rows.column("input_ids_length")),
        }
    ).join(_row_facts(rows))
    frame = segments.join(per_row, on="shard_row")
    frame.insert(0, "row", range(len(frame)))
    frame["starts_first_copy"] = frame["repeat"].eq(0).fillna(False) & frame["doc_token_start"].eq(0).fillna(False)
    frame["has_curated_parent"] = curated.contains([d if isinstance(d, str) else None for d in frame["doc_id"]])
    return frame


def shard_document_facts(frame: pd.DataFrame) -> pd.DataFrame:
    """The facts of a segment that depend on its document's other segments, in stream order: whether it begins
    where the copy's previous piece ended (so a piece lost, doubled or moved shows up), and how many splits the
    document was written to.  Computed on a frame holding every segment of each of its doc_ids (a partition of
    frame_partitions.py, or all of them)."""
    copy = frame.groupby(["doc_id", "repeat"], dropna=False)["segment_tokens"]
    frame["starts_where_previous_ended"] = (
        (copy.cumsum() - frame["segment_tokens"]).eq(frame["doc_token_start"]).astype("boolean")
    )
    frame["splits_of_document"] = frame.groupby("doc_id")["split"].transform("nunique").astype("Int64")
    return frame


def curated_frame(table: pa.Table, raw_doc_ids: IdLookup) -> pd.DataFrame:
    """Documents about to be published -> the document frame plus licence, word count and raw-parent flag."""
    frame = document_frame(table)
    frame["license"] = table.column("license").to_pandas()
    frame["n_words"] = _nullable_ints(pc.list_value_length(pc.utf8_split_whitespace(table.column("text"))))
    frame["has_raw_parent"] = raw_doc_ids.contains(table.column("doc_id").to_pylist())
    return frame
