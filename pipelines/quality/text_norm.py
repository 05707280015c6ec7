"""Text normalization shared by the dedup and decontamination steps, so they agree on what "the same" means.

* ``exact_key``: case, Unicode form and whitespace do not make two documents different.
* ``words``: lower-cased word tokens without punctuation.
* ``mask_numbers``: every number in the tokens becomes "0" (as DataTrove's minhash normalization does), for the
  near-duplicate candidate search: clinical near-duplicates typically differ in values (the same note with
  other vitals, labs and doses, or with shifted dates), and a changed value must not hide a copy from it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")


def exact_key(text: str) -> str:
    """sha256 of the text after NFKC, case folding and whitespace collapsing."""
    normalized = _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return hashlib.sha256(normalized.encode()).hexdigest()


def words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def mask_numbers(tokens: list[str]) -> list[str]:
    return [_NUMBER.sub("0", t) for t in tokens]


def ngrams(tokens: list[str], n: int) -> set[str]:
    """Word n-grams joined by a space; a text shorter than ``n`` words yields its whole token run once."""
    if not tokens:
        return set()
    if len(tokens) < n:
        return {" ".join(tokens)}
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}
