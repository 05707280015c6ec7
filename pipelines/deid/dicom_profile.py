"""The DICOM PS3.15 Annex E attribute table (Table E.1-1), loaded from ``annex_e.csv``.

The table is data, not code: one row per attribute with its Basic Application Level Confidentiality Profile
action and the actions of the two options we apply (Retain Longitudinal Temporal Information with Modified
Dates, Clean Descriptors).  A tag such as ``(60xx,3000)`` is a repeating-group pattern; ``x`` matches any hex
digit.  The table's row "Private attributes (GGGG,EEEE) where GGGG is odd" is not a tag and lives in code
(``is_private``), because the whole odd group goes, not one element.

Compound actions of the basic profile (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) let an implementation
pick the least removing action still needed for IOD conformance. We always take the first, most removing
alternative (X before Z before D; ``U*`` never wins): the output feeds research and training, not clinical
re-import, so a missing Type 1/2 attribute costs nothing while a kept one could leak. The options override the
basic action only where they make sense for the element's VR; the caller decides that (``dicom.py``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ANNEX_E_CSV = Path(__file__).with_name("annex_e.csv")
BASIC_ACTIONS = frozenset("XZDUK")


@dataclass(frozen=True)
class ProfileRule:
    """One row of Table E.1-1, with its compound basic action already resolved to a single code."""

    tag: str
    keyword: str
    basic: str
    modified_dates: bool
    clean_descriptors: bool


def resolve_compound(action: str) -> str:
    """``"X/Z/U*"`` -> ``"X"``: the first alternative is the strictest one (see the module docstring)."""
    first = action.split("/")[0].rstrip("*").strip()
    if first not in BASIC_ACTIONS:
        raise ValueError(f"unknown Annex E action {action!r}")
    return first


class Profile:
    """Looks up the rule for a tag: exact tags first, then repeating-group patterns."""

    def __init__(self, rules: list[ProfileRule]) -> None:
        self._exact = {int(r.tag, 16): r for r in rules if "x" not in r.tag}
        self._patterns = [r for r in rules if "x" in r.tag]
        self.rules = tuple(rules)

    def rule_for(self, tag: int) -> ProfileRule | None:
        rule = self._exact.get(tag)
        if rule is not None:
            return rule
        hex_tag = f"{tag:08x}"
        for pattern in self._patterns:
            if all(p == "x" or p == h for p, h in zip(pattern.tag, hex_tag, strict=True)):
                return pattern
        return None


def _normalize_tag(text: str) -> str:
    """``"(0008,0050)"`` -> ``"00080050"``; pattern letters are kept as lower-case ``x``."""
    return text.strip("() ").replace(",", "").lower()


@cache
def load_profile(path: Path = ANNEX_E_CSV) -> Profile:
    with path.open(newline="", encoding="utf-8") as handle:
        rules = [
            ProfileRule(
                tag=_normalize_tag(row["tag"]),
                keyword=row["keyword"],
                basic=resolve_compound(row["basic_profile"]),
                modified_dates=row["retain_longitudinal_modified_dates"] == "C",
                clean_descriptors=row["clean_descriptors"] == "C",
            )
            for row in csv.DictReader(handle)
        ]
    return Profile(rules)
