"""Safe Harbor's address rule, defined once: de-identification applies it, the residual-PHI gate checks by it.

HIPAA Safe Harbor (45 CFR 164.514(b)(2)(i)(B)) removes every geographic subdivision smaller than a state
(street, city, county or district, postal code) and lets the state and the country stay; a US ZIP code's first
three digits may stay where more than 20,000 people share them (``zip3`` in ``structured_rules.yaml``).  The
de-identifier keeps state and country on purpose, so a gate that counted them as leaks would block every
patient whose state is known (the first ten Synthea timelines: five blocked on "Massachusetts").  Both sides
read the parts below: what is ``KEPT`` is never a gate hit, every other part is, and the full postal code is
removed even where its first three digits stay.

Each structured format names the parts its own way; the maps here say which element or component is which
part, so neither side keeps its own list.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any


class Part(StrEnum):
    STREET = "street"
    CITY = "city"
    DISTRICT = "district"
    STATE = "state"
    POSTAL_CODE = "postal_code"
    COUNTRY = "country"
    # A free-text address whose parts cannot be told apart: removed whole, searched for whole.
    WHOLE = "whole"


KEPT = frozenset({Part.STATE, Part.COUNTRY})

# FHIR Address elements (``use``, ``type``, ``text``, ``period`` are not places; ``text`` repeats the parts and
# is dropped with them).
FHIR_ADDRESS = {
    "line": Part.STREET,
    "city": Part.CITY,
    "district": Part.DISTRICT,
    "state": Part.STATE,
    "postalCode": Part.POSTAL_CODE,
    "country": Part.COUNTRY,
}
FHIR_ADDRESS_NOT_PLACES = ("use", "type")

# HL7 v2 XAD components (1-based): street ^ other designation ^ city ^ state ^ zip ^ country ^ type ^ other
# geographic designation ^ county ^ census tract.  7 (address type) is no place.
HL7_XAD = {
    1: Part.STREET,
    2: Part.STREET,
    3: Part.CITY,
    4: Part.STATE,
    5: Part.POSTAL_CODE,
    6: Part.COUNTRY,
    8: Part.DISTRICT,
    9: Part.DISTRICT,
    10: Part.DISTRICT,
}
HL7_XAD_NOT_PLACES = (7,)

# DICOM's patient address is one free-text value (PatientAddress, LO): "12 Elm St, Boston, MA 02115" or
# "Boston, Massachusetts" or no commas at all.  Nothing says which comma-separated piece is the state, so the
# value is one ``WHOLE`` part: the profile removes it whole (PS3.15 Annex E: X, checked when the DICOM
# de-identifier starts) and the gate searches for it whole.  Splitting it would make the state a hit; a
# de-identifier that failed to remove the element leaves the whole value, which is found.
DICOM_FREE_TEXT_ADDRESS_TAGS = {0x00101040: "PatientAddress"}


# A flat table (a CSV export of patients) names the parts by column.  A column profile of
# ``structured_rules.yaml`` must give a column so named ``action: address`` (its part taken from the name), never
# ``keep`` or another action: whether the column stays is decided here, by ``KEPT``, like every other address.
COLUMN_PARTS = {
    "address": Part.STREET,
    "address_line": Part.STREET,
    "street": Part.STREET,
    "city": Part.CITY,
    "town": Part.CITY,
    "county": Part.DISTRICT,
    "district": Part.DISTRICT,
    "state": Part.STATE,
    "province": Part.STATE,
    "zip": Part.POSTAL_CODE,
    "zip_code": Part.POSTAL_CODE,
    "zipcode": Part.POSTAL_CODE,
    "postal_code": Part.POSTAL_CODE,
    "postcode": Part.POSTAL_CODE,
    "country": Part.COUNTRY,
}


def column_part(column: str) -> Part | None:
    """The address part a table column holds, by its name ("State", "ZIP_CODE"), or None."""
    return COLUMN_PARTS.get(column.strip().lower())


def fhir_address_parts(address: Mapping[str, Any]) -> Iterator[tuple[Part, str]]:
    """The (part, value) pairs of one FHIR Address; ``line`` gives one street value per line."""
    for element, part in FHIR_ADDRESS.items():
        value = address.get(element)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item.strip():
                yield part, item.strip()


def free_text_address_parts(value: str) -> Iterator[tuple[Part, str]]:
    """A free-text address (DICOM PatientAddress) as the policy sees it: one value, never split on commas."""
    if value.strip():
        yield Part.WHOLE, value.strip()


def removed_values(parts: Iterator[tuple[Part, str]]) -> Iterator[str]:
    """The values the policy removes: what the gate must find nowhere in de-identified output."""
    for part, value in parts:
        if part not in KEPT:
            yield value
