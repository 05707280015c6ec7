"""Validation frames: the only data Great Expectations ever sees, built so that none of it can be PHI.

GX copies unexpected values into its validation results and renders them in Data Docs under
``governance/``.  Handing it the ``text`` column would publish document text there.  So each zone is reduced
to a frame of ids, enum columns and derived facts: ``text_length`` and ``text_is_blank`` stand in for the
text, identifier columns become presence markers.  Every frame has a ``row`` column (position in the
validated table) so a failure maps back to exactly one row even when ``doc_id`` is null or duplicated.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


def shard_frame(table: pa.Table, curated_doc_ids: set[str]) -> pd.DataFrame:
    """Shard rows (with their ``split_directory``) -> ids, split, token counts, curated-parent flag."""
    doc_ids = table.column("doc_id")
    has_parent = pc.fill_null(pc.is_in(doc_ids, pa.array(sorted(curated_doc_ids), pa.string())), False)
    return pd.DataFrame(
        {
            "row": range(table.num_rows),
            "doc_id": doc_ids.to_pandas(),
            "source": table.column("source").to_pandas(),
            "split": table.column("split").to_pandas(),
            "split_directory": table.column("split_directory").to_pandas(),
            "n_tokens": _nullable_ints(table.column("n_tokens")),
            "input_ids_length": _nullable_ints(pc.list_value_length(table.column("input_ids"))),
            "has_curated_parent": has_parent.to_pandas().astype(bool),
        }
    )


def curated_frame(table: pa.Table, raw_doc_ids: set[str]) -> pd.DataFrame:
    """Documents about to be published -> the document frame plus licence, word count and raw-parent flag."""
    frame = document_frame(table)
    has_parent = pc.fill_null(pc.is_in(table.column("doc_id"), pa.array(sorted(raw_doc_ids), pa.string())), False)
    frame["license"] = table.column("license").to_pandas()
    frame["n_words"] = _nullable_ints(pc.list_value_length(pc.utf8_split_whitespace(table.column("text"))))
    frame["has_raw_parent"] = has_parent.to_pandas().astype(bool)
    return frame
