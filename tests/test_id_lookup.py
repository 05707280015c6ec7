"""IdLookup answers what ``pc.index_in`` answers (the first position of each id, or none), without rebuilding a
hash table of the whole array per batch, and a hash shared by two ids never makes a false match."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines.quality import id_lookup
from pipelines.quality.id_lookup import IdLookup


def _index_in(batch: list[str | None], ids: pa.Array) -> list[int]:
    return [-1 if at is None else at for at in pc.index_in(pa.array(batch, pa.string()), value_set=ids).to_pylist()]


def test_positions_are_those_of_arrow_index_in() -> None:
    rng = random.Random(4)
    ids = pa.array([f"pubmed:{rng.randrange(5_000)}" for _ in range(20_000)] + ["notes:a", "notes:a"])
    batch = ids.take(pa.array(rng.sample(range(len(ids)), 500))).to_pylist() + ["absent", "notes:a", "", None]
    lookup = IdLookup(ids)
    assert lookup.positions(batch).tolist() == _index_in(batch, ids)
    assert lookup.contains(["notes:a", "absent"]).tolist() == [True, False]


def test_an_empty_array_finds_nothing() -> None:
    assert IdLookup(pa.array([], pa.string())).positions(["a", None]).tolist() == [-1, -1]


def test_ids_with_one_hash_are_told_apart_by_the_ids_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(id_lookup, "id_hashes", lambda doc_ids: np.zeros(len(doc_ids), np.uint64))
    ids = pa.array(["c", "a", "b", "a"])
    assert IdLookup(ids).positions(["a", "b", "z", "c"]).tolist() == [1, 2, -1, 0]
