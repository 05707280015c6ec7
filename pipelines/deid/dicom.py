"""DICOM header de-identification: PS3.15 Annex E, Basic Application Level Confidentiality Profile.

Applied with two options, as the standard names them (and as recorded in the output's
DeidentificationMethodCodeSequence, CID 7050):

* Retain Longitudinal Temporal Information with Modified Dates: dates and times are shifted by a keyed
  per-patient offset instead of removed, so intervals survive (``dicom_dates.py``);
* Clean Descriptors: free-text descriptors are cleaned by an allowlist instead of removed
  (``dicom_descriptors.py``).

The attribute table is data (``annex_e.csv``, via ``dicom_profile.py``). Every element of the dataset, at
every sequence depth, gets one action:

* listed in the table: its action, with an option's ``C`` taking over where it fits the VR (a DA/DT/TM under
  Modified Dates is shifted, a text descriptor is cleaned, a sequence is kept and its items are processed by
  the same rules); compound actions resolve to the strictest alternative (see ``dicom_profile.py``);
* private (odd group), curve (50xx) or overlay (60xx) data, and stale group lengths: removed;
* not listed: kept, as the standard says, with four stricter rules because these VRs carry identity whatever
  the attribute is called: every other DA/DT/TM is shifted too (Instance Creation Date, Date of Last
  Calibration, ...), every UID that is not a DICOM-registered one is remapped, every other person name is
  emptied, and every age of 90 years or more becomes ``090Y``.

PatientID and PatientName become the keyed pseudonym (``medcurate.core.keys.pseudonym``) rather than a constant
dummy, so one patient's instances stay linkable across files, studies and the other source kinds.

Action codes and what they do here: X remove; Z empty (a sequence loses its items); D a dummy value of the VR
(a sequence loses its items, a UID is remapped); U remap UID (``dicom_uids.py``); C clean, shift or cap, as
above.  ``actions`` counts elements by the code applied; kept elements are not counted.

Pixel data is never touched.  Text burned into the pixels cannot be removed from the header, so instances that
may carry it (BurnedInAnnotation YES, or a photographic / secondary-capture modality not declared NO) are
flagged not publishable.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medcurate.core import address_policy
from medcurate.core.keys import pseudonym
from medcurate.formats.dicom_json import (
    dataset_from_json,
    dataset_to_json,
    instance_text,
    quiet_pydicom,
    study_text,
)
from pipelines.deid.config import default_config
from pipelines.deid.dicom_dates import DateShifter, clamp_age, date_offset
from pipelines.deid.dicom_descriptors import clean_descriptor
from pipelines.deid.dicom_profile import Profile, load_profile
from pipelines.deid.dicom_uids import is_registered_uid, remap_uid

BURNED_IN_REASON = "possible_burned_in_text"
# Modalities whose pixels are photographs, screenshots or documents, where text (names, dates) is often
# part of the image: ultrasound, secondary capture, other, external camera, endoscopy, microscopy (slide
# labels), ophthalmic photography, documents.
BURNED_IN_MODALITIES = frozenset({"US", "IVUS", "SC", "OT", "XC", "ES", "GM", "SM", "OP", "DOC"})
SECONDARY_CAPTURE_CLASS = "1.2.840.10008.5.1.4.1.1.7"

DEIDENTIFICATION_METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113105", "Clean Descriptors Option"),
)

DATE_VRS = frozenset({"DA", "DT", "TM"})
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC"})
STRING_VRS |= frozenset({"UI", "UR", "UT"})
NUMBER_VRS = frozenset({"FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "US or SS", "US or OW", "US or SS or OW"})
DUMMY_TEXT = "ANONYMIZED"
DUMMY_BY_VR = {"AS": "000Y", "DA": "19000101", "DT": "19000101000000", "TM": "000000", "DS": "0", "IS": "0"}
DUMMY_BYTES = b"\x00" * 8

# Resolved per-element actions; the one-letter ones are the standard's codes.
REMOVE, EMPTY, DUMMY, REMAP, KEEP = "X", "Z", "D", "U", "K"
SHIFT, CLEAN, PSEUDONYM = "shift", "clean", "pseudonym"
CLEANED = "C"


@dataclass
class DicomDeidResult:
    dicom_json: str  # de-identified header JSON (for a study record: a JSON array of instance headers)
    text: str  # summary re-rendered from the de-identified header(s)
    publishable: bool  # False when burned-in text may be present (any instance of a study)
    reason: str | None  # e.g. "possible_burned_in_text"
    actions: Counter[str]  # counts by action code applied, e.g. {"X": 40, "U": 6, "D": 3}


def possible_burned_in_text(ds: Dataset) -> bool:
    declared = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if declared in ("YES", "NO"):
        return declared == "YES"
    modality = str(ds.get("Modality", "") or "").strip().upper()
    return modality in BURNED_IN_MODALITIES or str(ds.get("SOPClassUID", "") or "") == SECONDARY_CAPTURE_CLASS


def _values(element: DataElement) -> list[str]:
    if element.VM > 1:
        return [str(value) for value in element.value]
    return [str(element.value)]


def _store(element: DataElement, values: list[str]) -> None:
    element.value = values if len(values) > 1 else values[0]


def _is_empty(element: DataElement) -> bool:
    return element.value is None or element.VM == 0 or (element.VR != "SQ" and _values(element) == [""])


def _empty_value(vr: str) -> Any:
    if vr == "SQ":
        return []
    return "" if vr in STRING_VRS else None


def _dummy_value(vr: str) -> Any:
    if vr == "SQ":
        return []
    if vr in NUMBER_VRS:
        return 0
    if vr in STRING_VRS:
        return DUMMY_BY_VR.get(vr, DUMMY_TEXT)
    return DUMMY_BYTES


def _time_partner(keyword: str) -> str | None:
    """The TM keyword that completes a DA keyword into one instant (StudyDate -> StudyTime)."""
    if keyword.endswith("Date"):
        return keyword[: -len("Date")] + "Time"
    if keyword.startswith("DateOf"):
        return "TimeOf" + keyword[len("DateOf") :]
    return None


def _patient_key(ds: Dataset) -> str:
    """Whose offset the dates get: the PatientID; without one, the study, so a study stays self-consistent."""
    return str(ds.get("PatientID", "") or "").strip() or str(ds.get("StudyInstanceUID", "") or "").strip()


def _check_address_rules(profile: Profile) -> None:
    """The profile must remove what the address policy says is removed whole (the gate searches for it whole)."""
    for tag, keyword in address_policy.DICOM_FREE_TEXT_ADDRESS_TAGS.items():
        rule = profile.rule_for(tag)
        if rule is None or rule.basic not in (REMOVE, EMPTY):
            raise ValueError(f"the DICOM profile keeps {keyword}, which the address policy removes whole")


class DicomDeidentifier:
    """Applies the profile with one secret key: same key, same pseudonyms, UIDs and date offsets."""

    def __init__(self, secret_key: bytes) -> None:
        self._key = secret_key
        self._profile: Profile = load_profile()
        _check_address_rules(self._profile)
        self._max_shift_days = default_config().date_shift_max_days

    def deidentify_dataset(self, ds: Dataset) -> Counter[str]:
        """De-identifies ``ds`` in place (its file meta too, if any) and returns the action counts."""
        counts: Counter[str] = Counter()
        # Quiet: pydicom's validation warnings quote the (identifying) values they complain about.
        with quiet_pydicom():
            offset = date_offset(self._key, _patient_key(ds), self._max_shift_days)
            shifter = DateShifter(offset)
            file_meta = getattr(ds, "file_meta", None)
            if file_meta is not None:
                self._clean_level(file_meta, shifter, counts)
            self._clean_level(ds, shifter, counts)
            _mark_deidentified(ds)
        return counts

    def deidentify_json(self, dicom_json: str) -> DicomDeidResult:
        """One instance header (a JSON object) or a study record (a JSON array of instance headers)."""
        parsed = json.loads(dicom_json)
        is_study = isinstance(parsed, list)
        datasets = [dataset_from_json(json.dumps(item)) for item in (parsed if is_study else [parsed])]
        with quiet_pydicom():
            burned_in = any(possible_burned_in_text(ds) for ds in datasets)
        counts: Counter[str] = Counter()
        for ds in datasets:
            counts.update(self.deidentify_dataset(ds))
        if is_study:
            output = "[" + ",".join(dataset_to_json(ds) for ds in datasets) + "]"
            text = study_text(datasets)
        else:
            output, text = dataset_to_json(datasets[0]), instance_text(datasets[0])
        return _result(output, text, burned_in, counts)

    def deidentify_file(self, src: Path, dst: Path) -> DicomDeidResult:
        """A de-identified copy of one DICOM file; pixels are copied untouched (hence the burned-in flag)."""
        with quiet_pydicom():
            ds = pydicom.dcmread(src)
            burned_in = possible_burned_in_text(ds)
            counts = self.deidentify_dataset(ds)
            if ds.preamble is not None:
                # The 128-byte preamble is free-form (TIFF-DICOM dual files keep a header there): blank it.
                ds.preamble = b"\x00" * 128
            dst.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(dst)
        return _result(dataset_to_json(ds), instance_text(ds), burned_in, counts)

    def _action(self, element: DataElement) -> str:
        tag, vr = element.tag, element.VR
        if tag.is_private or tag.group >> 8 in (0x50, 0x60):
            return REMOVE  # private groups, and curves (50xx) and overlays (60xx) whatever their element
        if tag.element == 0 and tag.group != 0x0002:
            return REMOVE  # a group length, stale once anything in its group is removed
        if element.keyword in ("PatientID", "PatientName"):
            return PSEUDONYM
        rule = self._profile.rule_for(tag)
        if rule is None:
            if vr in DATE_VRS:
                return SHIFT
            if vr == "UI":
                return KEEP if all(is_registered_uid(uid) for uid in _values(element)) else REMAP
            return EMPTY if vr == "PN" else KEEP
        if rule.modified_dates and vr in DATE_VRS:
            return SHIFT
        if rule.clean_descriptors and (vr in TEXT_VRS or vr == "SQ"):
            return CLEAN
        return rule.basic

    def _clean_level(self, ds: Dataset, shifter: DateShifter, counts: Counter[str]) -> None:
        """One dataset or sequence item: decide every action first, so DA/TM pairs can be shifted together."""
        patient_id = str(ds.get("PatientID", "") or "").strip()
        actions = {element.tag: self._action(element) for element in list(ds)}
        for tag, action in actions.items():
            if action == REMOVE:
                del ds[tag]
                counts[REMOVE] += 1
        self._shift_dates(ds, [tag for tag, action in actions.items() if action == SHIFT], shifter, counts)
        for tag, action in actions.items():
            if action not in (REMOVE, SHIFT):
                self._apply(ds, ds[tag], action, patient_id, shifter, counts)

    def _apply(
        self,
        ds: Dataset,
        element: DataElement,
        action: str,
        patient_id: str,
        shifter: DateShifter,
        counts: Counter,
    ) -> None:
        vr = element.VR
        if vr == "SQ" and action in (KEEP, CLEAN):
            for item in element.value:
                self._clean_level(item, shifter, counts)
            counts[CLEANED] += action == CLEAN
            return
        if _is_empty(element):
            return
        if action == KEEP:
            if vr == "AS" and (capped := [clamp_age(v) for v in _values(element)]) != _values(element):
                _store(element, capped)
                counts[CLEANED] += 1
        elif action == PSEUDONYM:
            if element.keyword == "PatientName" and not patient_id:
                element.value = ""
                counts[EMPTY] += 1
            else:
                element.value = pseudonym(self._key, patient_id)
                counts[DUMMY] += 1
        elif action == CLEAN:
            _store(element, [clean_descriptor(v) for v in _values(element)])
            counts[CLEANED] += 1
        elif action == REMAP and vr != "UI":
            del ds[element.tag]
            counts[REMOVE] += 1
        elif action == REMAP or (action == DUMMY and vr == "UI"):
            _store(element, [v if is_registered_uid(v) else remap_uid(self._key, v) for v in _values(element)])
            counts[REMAP] += 1
        elif action == DUMMY:
            element.value = _dummy_value(vr)
            counts[DUMMY] += 1
        elif action == EMPTY:
            element.value = _empty_value(vr)
            counts[EMPTY] += 1

    def _shift_dates(self, ds: Dataset, tags: list, shifter: DateShifter, counts: Counter[str]) -> None:
        pending = set(tags)
        # Dates first: a DA claims its TM partner before the TM could be shifted on its own.
        for tag in sorted(tags, key=lambda tag: ds[tag].VR != "DA"):
            if tag not in pending:
                continue
            pending.discard(tag)
            element = ds[tag]
            if _is_empty(element):
                continue
            partner_keyword = _time_partner(element.keyword) if element.VR == "DA" else None
            partner = ds.data_element(partner_keyword) if partner_keyword and partner_keyword in ds else None
            if partner is not None and partner.tag in pending and partner.VR == "TM" and not _is_empty(partner):
                pending.discard(partner.tag)
                pair = shifter.shift_date_time(str(element.value), str(partner.value))
                if element.VM == 1 and partner.VM == 1 and pair is not None:
                    element.value, partner.value = pair
                    counts[CLEANED] += 2
                else:
                    element.value, partner.value = "", ""
                    counts[EMPTY] += 2
                continue
            shift = _shift_function(shifter, element.VR)
            shifted = [shift(value) for value in _values(element)]
            if None in shifted:
                element.value = ""  # a value we cannot parse we cannot shift: it goes
                counts[EMPTY] += 1
            else:
                _store(element, [value for value in shifted if value is not None])
                counts[CLEANED] += 1


def _shift_function(shifter: DateShifter, vr: str) -> Callable[[str], str | None]:
    return {"DA": shifter.shift_date, "TM": shifter.shift_time, "DT": shifter.shift_datetime}[vr]


def _mark_deidentified(ds: Dataset) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [meaning for _, meaning in DEIDENTIFICATION_METHOD_CODES]
    ds.DeidentificationMethodCodeSequence = Sequence(_code_items(DEIDENTIFICATION_METHOD_CODES))
    ds.LongitudinalTemporalInformationModified = "MODIFIED"


def _code_items(codes: Iterable[tuple[str, str]]) -> list[Dataset]:
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    return items


def _result(dicom_json: str, text: str, burned_in: bool, counts: Counter[str]) -> DicomDeidResult:
    return DicomDeidResult(
        dicom_json=dicom_json,
        text=text,
        publishable=not burned_in,
        reason=BURNED_IN_REASON if burned_in else None,
        actions=counts,
    )
