"""Replace PHI spans: type tags, per-patient surrogate names, per-patient date shifts, ages 90+.

Surrogates are derived from HMAC(secret key, patient, original) (``medcurate.core.keys.keyed_hash``), so the same
name gets the same surrogate in every note of one patient and in every run with the same key, but nothing
links a surrogate back to the original without the key.  All dates of a patient move back by one offset
(1..``date_shift_max_days`` days, also keyed) so intervals between events survive.  A full date 90 or more
years back (in a note, nearly always the birth date of a patient aged 90 or over) is an element of a date
"indicative of such age" under Safe Harbor: it becomes the single year ``today - 90``, as structured birth
dates do (``StructuredDeidentifier.birth_date``).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache, cached_property
from pathlib import Path

import regex

from medcurate.core.keys import date_shift_days, keyed_hash
from medcurate.formats.date_text import shift_date_text, written_year
from pipelines.deid.config import DeidConfig
from pipelines.deid.engine import PhiSpan

# Names no surrogate may be: the first and last names of the bundled sample's patients (tests/test_sample_variety.py
# checks the file still covers the sample's lists).
RESERVED_NAMES_FILE = Path(__file__).with_name("surrogates_reserved.csv")
NAME_PART = regex.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]|[A-Za-z]")
AGE_CEILING = 90


@dataclass(frozen=True)
class Replacement:
    """Where a replacement landed in the de-identified text, what it replaced and how (no original text)."""

    start: int
    end: int
    label: str
    operator: str


@dataclass(frozen=True)
class DeidText:
    text: str
    replacements: list[Replacement]


@cache
def _reserved_names() -> frozenset[str]:
    lines = RESERVED_NAMES_FILE.read_text(encoding="utf-8").splitlines()[1:]  # after the "name" header
    return frozenset(line.strip().lower() for line in lines if line.strip())


class Replacer:
    def __init__(
        self, key: bytes | None, config: DeidConfig, tags_only: bool = False, today: date | None = None
    ) -> None:
        if key is None and not tags_only:
            raise ValueError("surrogates and date shifts need the pseudonymization key")
        self.key = key or b""
        self.config = config
        self.tags_only = tags_only
        self.today = today or date.today()

    @cached_property
    def _pools(self) -> tuple[list[str], list[str]]:
        """Surrogate name pools: gazetteer names that are not also ordinary or clinical words.

        The names the bundled synthetic sample gives its patients (``RESERVED_NAMES_FILE``) are left out too, so
        that in the sample any of them found in the output is a leak, never a surrogate that happens to coincide.
        """
        names = self.config.names
        reserved = _reserved_names()
        banned = names.ambiguous_names | names.never_names | names.stop_words | reserved

        def pool(words: frozenset[str]) -> list[str]:
            return sorted(w.capitalize() for w in words if len(w) >= 3 and w.isalpha() and w not in banned)

        return pool(names.first_names - names.last_names), pool(names.last_names)

    def date_offset_days(self, patient: str) -> int:
        """Days to move this patient's dates back: 1..date_shift_max_days, fixed by key and patient."""
        return date_shift_days(self.key, patient, self.config.date_shift_max_days)

    def shift_datetime(self, value: datetime, patient: str) -> datetime:
        return value - timedelta(days=self.date_offset_days(patient))

    def operator(self, label: str) -> str:
        return "tag" if self.tags_only else self.config.operator(label)

    def apply(self, text: str, spans: list[PhiSpan], patient: str) -> DeidText:
        parts: list[str] = []
        replacements: list[Replacement] = []
        pos = 0
        out_len = 0
        for span in sorted(spans):
            literal = text[pos : span.start]
            parts.append(literal)
            out_len += len(literal)
            operator = self.operator(span.label)
            new = self._replace(text[span.start : span.end], span.label, operator, patient)
            if new is None:
                operator, new = "tag", f"[{span.label}]"
            parts.append(new)
            replacements.append(Replacement(out_len, out_len + len(new), span.label, operator))
            out_len += len(new)
            pos = span.end
        parts.append(text[pos:])
        return DeidText("".join(parts), replacements)

    def _replace(self, original: str, label: str, operator: str, patient: str) -> str | None:
        if operator == "tag":
            return f"[{label}]"
        if operator == "shift":
            year = written_year(original)
            if year is not None and self.today.year - year >= AGE_CEILING:
                return str(self.today.year - AGE_CEILING)
            return shift_date_text(original, -self.date_offset_days(patient))
        if operator == "cap90":
            return "90+"
        return NAME_PART.sub(lambda m: self._surrogate_word(m.group(0), patient), original)

    def _surrogate_word(self, word: str, patient: str) -> str:
        digest = keyed_hash(self.key, "name", patient, word.lower())
        if len(word) == 1:
            letter = string.ascii_uppercase[int(digest[:8], 16) % 26]
            return letter if word.isupper() else letter.lower()
        first_pool, last_pool = self._pools
        names = self.config.names
        pool = first_pool if word.lower() in names.first_names and word.lower() not in names.last_names else last_pool
        index = int(digest[:12], 16) % len(pool)
        surrogate = pool[index]
        if surrogate.lower() == word.lower():  # a surrogate must never be the name it hides
            surrogate = pool[(index + 1) % len(pool)]
        if word.isupper():
            return surrogate.upper()
        if word.islower():
            return surrogate.lower()
        return surrogate
