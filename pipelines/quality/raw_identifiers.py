"""Each patient's own identifiers, read back from the raw zone by one small extractor per source kind.

The residual-PHI gate searches a patient's de-identified documents for exactly these strings, so it does not
depend on what the de-identifier recognised: it checks the result against what the source system said about
the patient.  Extractors yield ``(kind, value)`` pairs:

* every kind: the patient key itself (MRN, subject_id, FHIR Patient id, HL7 PID-3, DICOM PatientID);
* ``hl7v2`` and FHIR ``patient_timeline``: the demographics header the parsers put on top of the text
  (``Patient:``, ``MRN:``, ``Birth date:``, ``Phone:``, ``Email:`` lines, up to the first blank line), i.e.
  PID-5/7/13 and Patient.name/identifier/birthDate/telecom;
* their addresses (PID-11, Patient.address) from the structured payload, part by part, as far as
  ``medcurate.core.address_policy`` removes them: street, city, district, the full postal code.  State and
  country are kept by de-identification under Safe Harbor, so they are never searched for (a header line
  "Boston, Massachusetts" cannot tell which part is which; the payload can);
* ``dicom``: PatientName, PatientID, OtherPatientIDs, PatientBirthDate, PatientAddress and
  PatientTelephoneNumbers from the header's DICOM JSON.  PatientAddress is free text: it is searched for as
  one value, never split on commas (a piece could be the state, which is no hit; ``address_policy``);
* ``notes_csv``: the subject_id (the patient key), and the cells of columns named as an address part
  (``address_policy.COLUMN_PARTS``; the deid column rules must treat exactly those as addresses) as far as
  ``address_policy`` removes them: a kept state column is never searched for.  Names of notes patients come
  from the other sources that share their patient key.

Birth dates are expanded into the usual ways of writing them.  Values stay in memory only; nothing here is
ever logged or written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

from medcurate.core import address_policy
from medcurate.core.schema import CSV_ROW_KEY, DICOM_JSON_KEY, FHIR_JSON_KEY, HL7_MESSAGE_KEY
from medcurate.formats.hl7v2 import SEGMENT_END, Delimiters, Segment

IdentifierPairs = Iterator[tuple[str, str]]

# A raw identifier is searched for in de-identified text (by the residual-PHI gate, and by erasure when it checks
# that nothing of the erased patient is left) only from this length on: 3, because real name parts are that
# short ("Lee", "Ann") and must still be found; shorter values match ordinary words.
MIN_IDENTIFIER_CHARS = 3
# A short all-digit identifier ("4471") is indistinguishable from a lab value or a dose.
MIN_NUMERIC_IDENTIFIER_DIGITS = 5

# A name part shorter than this ("Li", an initial) matches too many ordinary tokens to be searched alone.
MIN_PART_CHARS = 3
HEADER_LABELS = {
    "patient": "name",
    "mrn": "identifier",
    "birth date": "birth_date",
    "phone": "phone",
    "email": "email",
}
DICOM_TAGS = {
    "00100010": "name",  # PatientName
    "00100020": "identifier",  # PatientID
    "00101000": "identifier",  # OtherPatientIDs
    "00100030": "birth_date",  # PatientBirthDate
    "00101040": "address",  # PatientAddress
    "00102154": "phone",  # PatientTelephoneNumbers
}
_SPLIT_NAME = re.compile(r"[\s,^]+")


def searchable(value: str) -> bool:
    """Whether ``value`` is distinctive enough to be searched for in de-identified text without false alarms."""
    value = value.strip()
    if len(value) < MIN_IDENTIFIER_CHARS:
        return False
    return not (value.isdigit() and len(value) < MIN_NUMERIC_IDENTIFIER_DIGITS)


def name_variants(name: str) -> IdentifierPairs:
    """The full name as written, "given family" for DICOM's "family^given", and each long-enough part."""
    name = name.strip()
    if not name:
        return
    yield "name", name
    if "^" in name:
        family, _, rest = name.partition("^")
        given = rest.split("^")[0]
        yield "name", f"{given} {family}".strip()
    for part in _SPLIT_NAME.split(name):
        if len(part) >= MIN_PART_CHARS and any(c.isalpha() for c in part):
            yield "name", part


def _parse_date(value: str) -> date | None:
    for fmt in ("%Y-%m-%d", "%Y%m%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(value.strip()[:10], fmt).date()
        except ValueError:
            continue
    return None


def birth_date_variants(value: str) -> IdentifierPairs:
    yield "birth_date", value.strip()
    day = _parse_date(value)
    if day is None:
        return
    month = day.strftime("%B")
    for text in (
        day.isoformat(),
        day.strftime("%Y%m%d"),
        day.strftime("%m/%d/%Y"),
        f"{day.month}/{day.day}/{day.year}",
        day.strftime("%m/%d/%y"),
        f"{day.month}/{day.day}/{day.strftime('%y')}",
        day.strftime("%m-%d-%Y"),
        f"{month} {day.day}, {day.year}",
        f"{month[:3]} {day.day}, {day.year}",
        f"{day.day} {month} {day.year}",
        f"{day.day} {month[:3]} {day.year}",
    ):
        yield "birth_date", text


def _typed(kind: str, value: str) -> IdentifierPairs:
    if kind == "name":
        yield from name_variants(value)
    elif kind == "birth_date":
        yield from birth_date_variants(value)
    elif kind == "address":  # DICOM PatientAddress: free text, one value (see address_policy)
        yield from _removed_address_values(address_policy.free_text_address_parts(value))
    elif value.strip():
        yield kind, value.strip()


def header_identifiers(text: str) -> IdentifierPairs:
    """The ``Label: value`` demographics lines at the top of an HL7 message or FHIR timeline."""
    for line in text.splitlines():
        if not line.strip():
            return
        label, sep, value = line.partition(":")
        kind = HEADER_LABELS.get(label.strip().lower())
        if sep and kind:
            yield from _typed(kind, value)


def _dicom_values(element: dict[str, Any]) -> Iterator[str]:
    for value in element.get("Value") or []:
        if isinstance(value, dict):  # PN: {"Alphabetic": "Family^Given"}
            yield from (str(v) for v in value.values() if v)
        elif value is not None:
            yield str(value)


def dicom_identifiers(row: dict[str, Any]) -> IdentifierPairs:
    extra = dict((row.get("metadata") or {}).get("extra") or [])
    header = extra.get(DICOM_JSON_KEY)
    if not header:
        return
    parsed = json.loads(header)
    for dataset in parsed if isinstance(parsed, list) else [parsed]:
        for tag, kind in DICOM_TAGS.items():
            for value in _dicom_values(dataset.get(tag) or {}):
                yield from _typed(kind, value)


def _payload(row: dict[str, Any], key: str) -> str:
    return dict((row.get("metadata") or {}).get("extra") or []).get(key) or ""


def _removed_address_values(parts: Iterator[tuple[address_policy.Part, str]]) -> IdentifierPairs:
    for value in address_policy.removed_values(parts):
        yield "address", value


def _fhir(row: dict[str, Any]) -> IdentifierPairs:
    if row.get("doc_type") != "patient_timeline":
        return
    yield from header_identifiers(row.get("text") or "")
    bundle = json.loads(_payload(row, FHIR_JSON_KEY) or "{}")
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Patient":
            for address in resource.get("address") or []:
                yield from _removed_address_values(address_policy.fhir_address_parts(address))


def _hl7v2(row: dict[str, Any]) -> IdentifierPairs:
    yield from header_identifiers(row.get("text") or "")
    segments = _payload(row, HL7_MESSAGE_KEY).split(SEGMENT_END)
    delimiters = Delimiters.from_msh(segments[0])
    for text in segments if delimiters else []:
        if text.startswith("PID"):
            pid = Segment(text, delimiters)
            for rep in range(len(pid.repetitions(11))):
                parts = ((part, pid.component(11, c, rep)) for c, part in address_policy.HL7_XAD.items())
                yield from _removed_address_values((part, value) for part, value in parts if value)


def _notes_csv(row: dict[str, Any]) -> IdentifierPairs:
    """Address cells, known by column name: the name list de-identification's column rules must follow too."""
    cells = json.loads(_payload(row, CSV_ROW_KEY) or "{}")
    for column, value in cells.items() if isinstance(cells, dict) else []:
        part = address_policy.column_part(column)
        if part is not None and isinstance(value, str) and value.strip():
            yield from _removed_address_values(iter([(part, value.strip())]))


EXTRACTORS: dict[str, Callable[[dict[str, Any]], IdentifierPairs]] = {
    "fhir": _fhir,
    "hl7v2": _hl7v2,
    "dicom": dicom_identifiers,
    "notes_csv": _notes_csv,
}


def identifiers(row: dict[str, Any]) -> IdentifierPairs:
    """Every identifier a raw row states about its patient, the patient key included."""
    if row.get("patient_key"):
        yield "identifier", str(row["patient_key"])
    extractor = EXTRACTORS.get(row.get("source_kind", ""))
    if extractor is not None:
        yield from extractor(row)
