"""Train/validation/test assignment by a hashed group key, so no patient or article spans two splits.

The split of a document depends only on its group key and the spec's fractions, never on which other
documents are in the corpus: adding a source or re-running after a fix moves nobody between splits (which
would leak evaluation data into training).  The key fields per source kind live in ``split_keys.yaml``.

Hash: ``sha256(key)``, its first 8 bytes as a big-endian integer divided by 2**64 gives a fraction in
[0, 1); the split is the first one whose cumulative fraction (in spec order) exceeds it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from medcurate.core.names import SOURCE_KINDS

# The curated columns a split decision reads.
SPLIT_KEY_COLUMNS = ["doc_id", "source_kind", "patient_pseudonym", "metadata"]


@cache
def split_key_fields() -> dict[str, tuple[str, ...]]:
    """source_kind -> the fields tried in order for the group key (``metadata.x`` reads a metadata field)."""
    raw = yaml.safe_load(resources.files(__package__).joinpath("split_keys.yaml").read_text(encoding="utf-8"))
    fields = {kind: tuple(names) for kind, names in raw.items()}
    missing = sorted(set(SOURCE_KINDS) - set(fields))
    if missing:
        raise ValueError(f"split_keys.yaml has no key fields for source kind(s) {missing}")
    return fields


def split_key(source_kind: str, row: Mapping[str, Any]) -> str:
    """The group key of one document row (``DEID_DOCUMENT_SCHEMA`` fields; ``metadata`` a dict or None)."""
    metadata = row.get("metadata") or {}
    for name in split_key_fields()[source_kind]:
        value = metadata.get(name.removeprefix("metadata.")) if name.startswith("metadata.") else row.get(name)
        if value:
            return str(value)
    raise ValueError(f"document {row.get('doc_id')} has none of the split key fields for kind {source_kind}")


def key_fraction(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def assign_split(key: str, fractions: Mapping[str, float]) -> str:
    """The split a group key falls in; fractions are the spec's ``splits`` (they sum to 1)."""
    point = key_fraction(key)
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        if point < cumulative:
            return name
    # Float rounding can leave the cumulative sum a hair under 1: the last split with a share takes the rest.
    return [name for name, fraction in fractions.items() if fraction > 0][-1]


def batch_splits(batch: pa.Table | pa.RecordBatch, fractions: Mapping[str, float]) -> list[str]:
    """The split of every row of a curated batch (needs doc_id, source_kind, patient_pseudonym, metadata)."""
    metadata = batch.column("metadata")
    rows = zip(
        batch.column("doc_id").to_pylist(),
        batch.column("source_kind").to_pylist(),
        batch.column("patient_pseudonym").to_pylist(),
        pc.struct_field(metadata, "pmid").to_pylist(),
        pc.struct_field(metadata, "pmcid").to_pylist(),
        strict=True,
    )
    return [
        assign_split(
            split_key(
                kind, {"doc_id": doc_id, "patient_pseudonym": patient, "metadata": {"pmid": pmid, "pmcid": pmcid}}
            ),
            fractions,
        )
        for doc_id, kind, patient, pmid, pmcid in rows
    ]
