"""The near-duplicate similarity (pipelines/quality/word_similarity.py): the bit-parallel LCS against the
textbook dynamic programme, and the cheap bounds never rejecting a pair that reaches the threshold."""

from __future__ import annotations

import random

import numpy as np

from pipelines.quality.dedup import word_sequence
from pipelines.quality.word_similarity import (
    BUCKETS,
    COUNT_DTYPE,
    InOrder,
    WordSequence,
    longest_common_subsequence,
    may_reach,
    word_counts,
)


def _lcs_table(a: list[int], b: list[int]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def shared_in_order(query: WordSequence, others: list[WordSequence], threshold: float) -> list[float | None]:
    """What NearDedup does with a document's candidates: screen them all at once with ``may_reach``, then
    verify the ones it lets through with ``InOrder``."""
    lengths = np.array([len(o) for o in others], dtype=np.int64)
    counts = np.stack([word_counts(o.ids) for o in others]) if others else np.zeros((0, BUCKETS), COUNT_DTYPE)
    reach = may_reach(len(query), word_counts(query.ids), lengths, counts, threshold)
    matcher = InOrder(query)
    return [matcher.share(o, threshold) if ok else None for o, ok in zip(others, reach.tolist(), strict=True)]


def _random_pair(rng: random.Random) -> tuple[list[int], list[int]]:
    """Small alphabets and edits of one sequence, so that both near and far pairs occur."""
    a = [rng.randrange(rng.choice([2, 5, 30])) for _ in range(rng.randint(0, 70))]
    b = [x if rng.random() < rng.random() else rng.randrange(30) for x in a]
    b = b[rng.randint(0, 3) :] + [rng.randrange(30) for _ in range(rng.randint(0, 8))]
    return a, b


def test_bit_parallel_lcs_matches_the_dynamic_programme() -> None:
    rng = random.Random(11)
    for _ in range(400):
        a, b = _random_pair(rng)
        assert longest_common_subsequence(a, b) == _lcs_table(a, b), (a, b)


def test_lcs_that_stops_early_is_exact_when_it_reaches_what_is_needed() -> None:
    """With ``need`` the LCS stops once it cannot reach it; it is then below ``need``, and exact otherwise.
    Long sequences, so that the check every 64 words runs several times."""
    rng = random.Random(12)
    for _ in range(200):
        a = [rng.randrange(rng.choice([3, 40, 400])) for _ in range(rng.randint(0, 400))]
        b = [x if rng.random() < rng.random() else rng.randrange(400) for x in a][rng.randint(0, 20) :]
        exact = _lcs_table(a, b)
        need = rng.randint(0, max(len(a), len(b)))
        found = longest_common_subsequence(a, b, need)
        assert found == exact if exact >= need else found < need, (exact, need, found)


def test_bounds_only_reject_pairs_below_the_threshold() -> None:
    """One query against many others at once, as NearDedup verifies a document's candidates."""
    rng = random.Random(12)
    reached = 0
    for threshold in (0.5, 0.8, 0.9):
        for _ in range(20):
            pairs = [_random_pair(rng) for _ in range(20)]
            query = pairs[0][0]
            others = [b for _, b in pairs] + [query[:-2] + [99, 98], list(query)]
            expected = []
            for b in others:
                exact = _lcs_table(query, b) / max(len(query), len(b), 1)
                expected.append(exact if query and b and exact >= threshold else None)
            sequence = WordSequence(np.array(query, np.uint32))
            assert shared_in_order(sequence, [WordSequence(np.array(b, np.uint32)) for b in others], threshold) == (
                expected
            )
            reached += sum(share is not None for share in expected)
    assert reached > 50  # the random pairs exercise both outcomes


def test_reference_points_of_the_measure() -> None:
    words = [f"w{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(200)]
    replaced = ["other" if i % 10 == 3 else w for i, w in enumerate(words)]
    appended = words + ["more"] * 20
    shuffled = random.Random(1).sample(words, len(words))

    def share(x: list[str], y: list[str]) -> float | None:
        return shared_in_order(word_sequence(" ".join(x)), [word_sequence(" ".join(y))], 0.0)[0]

    assert share(words, replaced) == 0.9
    assert share(words, appended) == 200 / 220
    assert share(words, shuffled) < 0.2
    # Case and punctuation do not count; a different value is a different word.
    assert share(["HR:", "96,", "BP", "112/68"], ["hr", "96", "bp", "140/90"]) == 0.6
