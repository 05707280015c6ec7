"""Per-source mixing weights: how many copies of each training document the shards hold.

A weight ``w`` gives every document of the source ``floor(w)`` copies, plus one more when the document's
hashed fraction falls below ``w - floor(w)``.  The fraction is a hash of the doc_id alone, so a rebuild
keeps and drops exactly the same documents whatever the run order, and raising a weight only ever adds
documents.  Weights apply to the train split only: validation and test keep every document once, so
evaluation measures the corpus as it is, not the training mixture.  A document's copies are written one
after the other (``repeat`` 0, 1, ...); the trainer's reader shuffles rows.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_WEIGHT = 1.0
MIXED_SPLIT = "train"


def mixing_fraction(doc_id: str) -> float:
    """A fraction in [0, 1) that depends only on the doc_id (independent of the split hash)."""
    return int.from_bytes(hashlib.sha256(f"mixing\x1f{doc_id}".encode()).digest()[:8], "big") / 2**64


def copies_of(doc_id: str, weight: float) -> int:
    whole = math.floor(weight)
    return whole + (1 if mixing_fraction(doc_id) < weight - whole else 0)


def batch_copies(
    doc_ids: Sequence[str], sources: Sequence[str], splits: Sequence[str], weights: Mapping[str, float]
) -> np.ndarray:
    """Copies per row (0 = sampled out); only train rows of weighted sources differ from 1."""
    return np.fromiter(
        (
            copies_of(doc_id, weights[source]) if split == MIXED_SPLIT and source in weights else 1
            for doc_id, source, split in zip(doc_ids, sources, splits, strict=True)
        ),
        dtype=np.int64,
        count=len(doc_ids),
    )
