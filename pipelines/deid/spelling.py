"""Misspelled ordinary words: notes are typed fast ("ERYTHEMATUS", "ASYMPTOMATTIC", "Contineue", "Labettalol").

A misspelled word is in no dictionary, so the rules that take an unknown word for a name or a place would flag
it.  A long word one typing slip away from a known word (a letter dropped, added, changed or two swapped) is
taken for that word instead.  Names that close to a word are rare at this length, and they still count where a
title, credential or context says they are names.

The check is a deletion index (as in SymSpell): every known word with each one letter deleted, keyed by the
position of the deleted letter, so that a changed letter is found as the same deletion at the same place.
"""

from __future__ import annotations

from collections.abc import Iterable

# Shorter words are too often one slip from some word ("hicks" / "kicks", "Halvard" / "halyard"): never slips.
MIN_LENGTH = 8


def _deletions(word: str) -> list[tuple[int, str]]:
    return [(i, word[:i] + word[i + 1 :]) for i in range(len(word))]


class Misspellings:
    """Is a word a slip of a known word?  Built once per engine from the known words (lower-case); gazetteer
    ``names`` are never slips ("Freeman" is no "freemen")."""

    def __init__(self, known: Iterable[str], names: frozenset[str] = frozenset()) -> None:
        self.known = frozenset(w for w in known if len(w) >= MIN_LENGTH - 1 and w.isalpha())
        self.names = names
        self.deleted = frozenset(pair for w in self.known for pair in _deletions(w))
        self.shortened = frozenset(d for _, d in self.deleted)

    def __call__(self, word: str) -> bool:
        low = word.lower()
        if len(low) < MIN_LENGTH or not low.isalpha() or low in self.known or low in self.names:
            return False
        if low in self.shortened:
            return True  # a letter dropped: "erythematus"
        for i, shorter in _deletions(low):
            if shorter in self.known or (i, shorter) in self.deleted:
                return True  # a letter added ("ocurrence") or changed ("diltaizem")
        swaps = (low[:i] + low[i + 1] + low[i] + low[i + 2 :] for i in range(len(low) - 1))
        return any(s in self.known for s in swaps)  # two letters swapped
