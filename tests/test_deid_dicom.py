"""DICOM header de-identification (PS3.15 Annex E) on pydicom's bundled test files and synthetic headers.

The key test reads every bundled file pydicom can read, de-identifies it, and searches the whole output (DICOM
JSON, file meta, rendered text and every value at every sequence depth) for each original value the profile
takes away.  Only files already on disk are used: ``get_testdata_file`` would download the others.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from medcurate.core.keys import pseudonym
from medcurate.formats.dicom_json import dataset_from_json, dataset_to_json, instance_text
from pipelines.deid.dicom import DUMMY_TEXT, DicomDeidentifier
from pipelines.deid.dicom_dates import clamp_age
from pipelines.deid.dicom_descriptors import clean_descriptor, is_safe_word
from pipelines.deid.dicom_profile import load_profile
from pipelines.deid.dicom_uids import is_registered_uid

# The tests read raw originals too (outside the de-identifier's own quiet reading): no value-quoting warnings.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

KEY = b"test-key-for-dicom-deid-0123456789"
OTHER_KEY = b"another-key-for-dicom-deid-987654321"
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
MIN_VALUE_LENGTH = 4
STRING_VRS = {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
DATE_VRS = {"DA", "DT", "TM"}
_WORD = re.compile(r"\d+(?:[./:-]\d+)+|[A-Za-z0-9]+")


def _readable_test_files() -> list[Path]:
    readable = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(p for p in TEST_FILES.rglob("*") if p.is_file()):
            try:
                pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:  # not a file pydicom reads: out of scope for this test
                continue
            readable.append(path)
    return readable


READABLE_FILES = _readable_test_files()


def _read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True)


def _strings(element) -> list[str]:
    """An element's values as strings (a person name also by component); [] for numbers and bytes."""
    if element.VR not in STRING_VRS or element.value is None:
        return []
    values = element.value if element.VM > 1 else [element.value]
    out = []
    for value in values:
        text = str(value).strip()
        out.append(text)
        if element.VR == "PN":
            out.extend(part.strip() for part in re.split(r"[\^=]", text))
    return [v for v in out if v]


def _all_strings(ds: Dataset) -> Iterator[str]:
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                yield from _all_strings(item)
        else:
            yield from _strings(element)


def _is_clean_descriptor(value: str) -> bool:
    return all(is_safe_word(word) for word in _WORD.findall(value))


def _split_original(ds: Dataset, protected: set[str], kept: set[str]) -> None:
    """Sort the original values into those the profile takes away and those it keeps.

    Taken away: every value of a table attribute with a non-K action (the whole subtree of a removed, emptied
    or dummied sequence), of a private, curve or overlay element, and of the VRs the implementation treats
    strictly everywhere (DA/DT/TM, PN, non-registered UIDs).
    """
    profile = load_profile()
    for element in ds:
        tag = element.tag
        rule = profile.rule_for(tag)
        removed_wholesale = tag.is_private or tag.group >> 8 in (0x50, 0x60)
        if element.VR == "SQ":
            if removed_wholesale or (rule is not None and not rule.clean_descriptors):
                for item in element.value:
                    protected.update(_all_strings(item))
            else:
                for item in element.value:
                    _split_original(item, protected, kept)
            continue
        values = _strings(element)
        strict_vr = element.VR in DATE_VRS | {"PN"} or (
            element.VR == "UI" and not all(is_registered_uid(v) for v in values)
        )
        if removed_wholesale or strict_vr or (rule is not None and rule.basic != "K"):
            protected.update(values)
        else:
            kept.update(values)


def _haystack(ds: Dataset) -> str:
    """Everything the output holds, as text: JSON (header and file meta), rendered text, every value."""
    parts = [dataset_to_json(ds), instance_text(ds), *_all_strings(ds)]
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is not None:
        parts.extend([dataset_to_json(file_meta), *_all_strings(file_meta)])
    return "\n".join(json.dumps(json.loads(p), ensure_ascii=False) if p.startswith("{") else p for p in parts)


def _pop_clean_descriptors(ds: Dataset) -> list[str]:
    """Blank (in this copy) and return the values the Clean Descriptors option wrote, at every depth.

    They are checked on their own (every word allowlisted), so that an allowlisted word ("Test" of "Structured
    Reporting Test Document") does not count as a leak of the patient name "Test^S R", while the name itself
    is still searched everywhere else.
    """
    profile = load_profile()
    popped: list[str] = []
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                popped.extend(_pop_clean_descriptors(item))
            continue
        rule = profile.rule_for(element.tag)
        if rule is not None and rule.clean_descriptors and element.VR not in DATE_VRS and element.VR in STRING_VRS:
            popped.extend(_strings(element))
            element.value = ""
    return popped


def _survives(value: str, haystack: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9.]){re.escape(value)}(?![A-Za-z0-9.])", haystack) is not None


def _tags_at_any_depth(ds: Dataset) -> Iterator[int]:
    for element in ds:
        yield element.tag
        if element.VR == "SQ":
            for item in element.value:
                yield from _tags_at_any_depth(item)


def test_bundled_files_are_found():
    assert len(READABLE_FILES) > 100


@pytest.mark.parametrize("path", READABLE_FILES, ids=lambda p: str(p.relative_to(TEST_FILES)))
def test_no_protected_value_survives_in_any_bundled_file(path: Path):
    original = _read(path)
    protected: set[str] = set()
    kept: set[str] = set()
    _split_original(original, protected, kept)
    if getattr(original, "file_meta", None) is not None:
        _split_original(original.file_meta, protected, kept)

    ds = _read(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DicomDeidentifier(KEY).deidentify_dataset(ds)
    assert not caught, "pydicom warnings quote values: de-identification must not emit any"

    searched = copy.deepcopy(ds)
    cleaned = _pop_clean_descriptors(searched)
    assert all(_is_clean_descriptor(value) for value in cleaned)
    haystack = _haystack(searched)
    # A value that an attribute the profile keeps holds too (Institution Name TOSHIBA, Manufacturer
    # TOSHIBA_MEC) is there by design, not by leak; our own dummy value is there by construction.
    kept_text = "\n".join(kept)
    candidates = {
        v for v in protected if len(v) >= MIN_VALUE_LENGTH and v.upper() != DUMMY_TEXT and not _survives(v, kept_text)
    }
    leaked = sorted(v for v in candidates if _survives(v, haystack))
    assert not leaked, f"{len(leaked)} protected values survive, e.g. {leaked[:5]}"

    removed = {int(rule.tag, 16) for rule in load_profile().rules if rule.basic == "X" and "x" not in rule.tag}
    modified_or_cleaned = {
        int(r.tag, 16) for r in load_profile().rules if "x" not in r.tag and (r.modified_dates or r.clean_descriptors)
    }
    remaining = set(_tags_at_any_depth(ds))
    assert not (remaining & (removed - modified_or_cleaned))
    assert not any(tag.is_private or tag.group >> 8 in (0x50, 0x60) for tag in remaining)


def _header(patient_id: str = "MRN-0042", **values) -> Dataset:
    ds = Dataset()
    ds.PatientID = patient_id
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = "19500304"
    ds.PatientSex = "F"
    ds.Modality = "CT"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.1.11"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.1.12"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.1.13"
    ds.StudyDate = "20200101"
    ds.StudyTime = "235000"
    ds.InstitutionName = "Saint Elsewhere Hospital"
    ds.StudyDescription = "CT HEAD WO CONTRAST Jane Doe 2020-01-01"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _instant(ds: Dataset, date_keyword: str, time_keyword: str) -> datetime:
    return datetime.strptime(
        str(ds.data_element(date_keyword).value) + str(ds.data_element(time_keyword).value)[:6],
        "%Y%m%d%H%M%S",
    )


def test_uids_are_remapped_consistently_across_files_and_runs():
    first = _header()
    second = _header(SOPInstanceUID="1.2.826.0.1.3680043.2.1125.1.14")
    reference = Dataset()
    reference.ReferencedSOPClassUID = first.SOPClassUID
    reference.ReferencedSOPInstanceUID = first.SOPInstanceUID
    second.ReferencedImageSequence = Sequence([reference])
    evidence = Dataset()
    evidence.ReferencedSOPInstanceUID = first.SOPInstanceUID
    second.ContributingEquipmentSequence = Sequence([evidence])  # a kept sequence: its items are processed

    DicomDeidentifier(KEY).deidentify_dataset(first)
    DicomDeidentifier(KEY).deidentify_dataset(second)  # a new instance: consistency comes from the key alone

    assert first.StudyInstanceUID == second.StudyInstanceUID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert second.ContributingEquipmentSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert "ReferencedImageSequence" not in second  # X/Z/U* resolves to X
    for uid in (first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID):
        assert uid.startswith("2.25.") and UID(uid).is_valid
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # registered UIDs name no one

    other = _header()
    DicomDeidentifier(OTHER_KEY).deidentify_dataset(other)
    assert other.StudyInstanceUID != first.StudyInstanceUID


def test_dates_shift_per_patient_and_keep_intervals():
    baseline = _header(AcquisitionDate="20200102", AcquisitionTime="001500.25", AcquisitionDateTime="20200102001500")
    follow_up = _header(StudyDate="20200315", StudyTime="081500", SeriesDate="20200315", SeriesTime="091500")
    stranger = _header(patient_id="MRN-9999")
    before = (
        _instant(follow_up, "StudyDate", "StudyTime") - _instant(baseline, "StudyDate", "StudyTime"),
        _instant(baseline, "AcquisitionDate", "AcquisitionTime") - _instant(baseline, "StudyDate", "StudyTime"),
    )

    deidentifier = DicomDeidentifier(KEY)
    for ds in (baseline, follow_up, stranger):
        deidentifier.deidentify_dataset(ds)

    after = (
        _instant(follow_up, "StudyDate", "StudyTime") - _instant(baseline, "StudyDate", "StudyTime"),
        _instant(baseline, "AcquisitionDate", "AcquisitionTime") - _instant(baseline, "StudyDate", "StudyTime"),
    )
    assert after == before
    assert baseline.StudyDate != "20200101" and baseline.StudyTime != "235000"
    assert baseline.AcquisitionTime.endswith(".25")
    assert baseline.AcquisitionDateTime == baseline.AcquisitionDate + baseline.AcquisitionTime[:6]
    assert _instant(follow_up, "SeriesDate", "SeriesTime") - _instant(follow_up, "StudyDate", "StudyTime") == (
        datetime(2020, 3, 15, 9, 15) - datetime(2020, 3, 15, 8, 15)
    )
    assert stranger.StudyDate + stranger.StudyTime != baseline.StudyDate + baseline.StudyTime
    assert baseline.PatientBirthDate == ""  # Z in the table: no option keeps a birth date


def test_patient_identity_becomes_the_keyed_pseudonym():
    ds = _header(OtherPatientIDs="OLD-1", PatientAge="093Y", EthnicGroup="X")
    ds.ContributingEquipmentSequence = Sequence([Dataset()])
    ds.ContributingEquipmentSequence[0].SelectorASValue = "095Y"  # not in the table: kept, but capped
    DicomDeidentifier(KEY).deidentify_dataset(ds)
    assert ds.PatientID == pseudonym(KEY, "MRN-0042")
    assert str(ds.PatientName) == pseudonym(KEY, "MRN-0042")
    assert "OtherPatientIDs" not in ds and "PatientAge" not in ds and "EthnicGroup" not in ds
    assert ds.ContributingEquipmentSequence[0].SelectorASValue == "090Y"
    assert clamp_age("089Y") == "089Y" and clamp_age("102Y") == "090Y" and clamp_age("011M") == "011M"
    assert ds.PatientSex == ""
    assert "InstitutionName" not in ds  # X/Z/D resolves to X
    assert ds.StudyDescription == "CT HEAD WO CONTRAST"


def test_private_tags_curves_and_overlays_are_removed_at_every_depth():
    ds = _header()
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "Jane Doe private copy")
    ds.add_new(0x60000010, "US", 16)
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 8)
    ds.add_new(0x50000005, "US", 2)
    item = Dataset()
    item.CodeValue = "T-A0100"
    nested_block = item.private_block(0x0019, "ACME 1.0", create=True)
    nested_block.add_new(0x02, "SH", "MRN-0042")
    ds.ProcedureCodeSequence = Sequence([item])

    counts = DicomDeidentifier(KEY).deidentify_dataset(ds)

    tags = set(_tags_at_any_depth(ds))
    assert not any(tag.is_private for tag in tags)
    assert not any(tag.group >> 8 in (0x50, 0x60) for tag in tags)
    assert ds.ProcedureCodeSequence[0].CodeValue == "T-A0100"
    assert counts["X"] >= 7


def test_nested_sequences_are_cleaned():
    inner = Dataset()
    inner.PersonName = "Smith^John"  # D
    inner.UID = "1.2.826.0.1.3680043.2.1125.9.1"  # U
    inner.ObservationDateTime = "20200101120000"  # unlisted DT: shifted
    request = Dataset()
    request.RequestedProcedureID = "RP-778899"  # X
    request.AccessionNumber = "ACC-123456"  # Z
    request.ScheduledProcedureStepDescription = "CT CHEST Jane Doe"  # C
    request.ContentSequence = Sequence([inner])  # D: emptied
    kept_item = Dataset()
    kept_item.ReferringPhysicianName = "House^Gregory"  # Z
    kept_item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.2.1125.1.13"  # U
    request.ReferencedStudySequence = Sequence([kept_item])  # X/Z -> X
    ds = _header(RequestAttributesSequence=Sequence([request]))  # C on a sequence: kept, items processed
    procedure = Dataset()
    procedure.ConceptNameCodeSequence = Sequence([Dataset()])
    procedure.ConceptNameCodeSequence[0].CodeMeaning = "Chest"
    procedure.VerifyingObserverName = "Wilson^James"  # D
    ds.ContributingEquipmentSequence = Sequence([procedure])

    counts = DicomDeidentifier(KEY).deidentify_dataset(ds)

    cleaned = ds.RequestAttributesSequence[0]
    assert "RequestedProcedureID" not in cleaned
    assert cleaned.AccessionNumber == ""
    assert cleaned.ScheduledProcedureStepDescription == "CT CHEST"
    assert len(cleaned.ContentSequence) == 0
    assert "ReferencedStudySequence" not in cleaned
    assert str(ds.ContributingEquipmentSequence[0].VerifyingObserverName) == DUMMY_TEXT
    assert ds.ContributingEquipmentSequence[0].ConceptNameCodeSequence[0].CodeMeaning == "Chest"
    assert counts["C"] >= 1 and counts["Z"] >= 1 and counts["D"] >= 1


def test_identity_removed_attributes_are_set():
    ds = _header()
    DicomDeidentifier(KEY).deidentify_dataset(ds)
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = {(item.CodeValue, item.CodingSchemeDesignator) for item in ds.DeidentificationMethodCodeSequence}
    assert codes == {("113100", "DCM"), ("113107", "DCM"), ("113105", "DCM")}
    assert len(ds.DeidentificationMethod) == 3


@pytest.mark.parametrize(
    ("modality", "declared", "publishable"),
    [
        ("CT", None, True),
        ("CT", "YES", False),
        ("US", None, False),
        ("US", "NO", True),
        ("SC", None, False),
        ("OT", None, False),
        ("XC", None, False),
        ("ES", None, False),
        ("MR", "NO", True),
    ],
)
def test_possible_burned_in_text_is_not_publishable(modality: str, declared: str | None, publishable: bool):
    ds = _header(Modality=modality)
    if declared is not None:
        ds.BurnedInAnnotation = declared
    result = DicomDeidentifier(KEY).deidentify_json(dataset_to_json(ds))
    assert result.publishable is publishable
    assert result.reason == (None if publishable else "possible_burned_in_text")


def test_header_json_round_trip_for_an_instance_and_a_study():
    deidentifier = DicomDeidentifier(KEY)
    instance = deidentifier.deidentify_json(dataset_to_json(_header()))
    rebuilt = dataset_from_json(instance.dicom_json)
    assert rebuilt.PatientID == pseudonym(KEY, "MRN-0042")
    assert instance.text == instance_text(rebuilt)
    assert "Jane" not in instance.text and "Doe" not in instance.text and "Elsewhere" not in instance.text
    assert instance.actions["U"] == 3 and instance.actions["X"] >= 1

    headers = [
        dataset_to_json(_header()),
        dataset_to_json(_header(SOPInstanceUID="1.2.3.4.5", Modality="US")),
    ]
    study = deidentifier.deidentify_json(json.dumps([json.loads(h) for h in headers]))
    items = json.loads(study.dicom_json)
    assert len(items) == 2
    rebuilt_study = [dataset_from_json(json.dumps(item)) for item in items]
    assert rebuilt_study[0].StudyInstanceUID == rebuilt_study[1].StudyInstanceUID == rebuilt.StudyInstanceUID
    assert "2 instances" in study.text and "MRN-0042" not in study.text
    assert study.publishable is False  # one ultrasound instance is enough
    assert study.actions["U"] == 2 * instance.actions["U"]


def test_deidentified_file_copy_keeps_pixels_and_blanks_the_preamble(tmp_path: Path):
    src = TEST_FILES / "CT_small.dcm"
    dst = tmp_path / "out" / "ct.dcm"
    result = DicomDeidentifier(KEY).deidentify_file(src, dst)
    original, copy = pydicom.dcmread(src), pydicom.dcmread(dst)
    assert copy.PixelData == original.PixelData
    assert copy.preamble == b"\x00" * 128
    assert copy.file_meta.MediaStorageSOPInstanceUID == copy.SOPInstanceUID != original.SOPInstanceUID
    assert str(original.PatientName) not in dst.read_bytes().decode("latin-1")
    assert result.publishable and json.loads(result.dicom_json)["00100020"]["Value"] == [copy.PatientID]


def test_descriptor_cleaner_keeps_vocabulary_and_drops_the_rest():
    assert clean_descriptor("CT, HEAD/BRAIN WO CONTRAST") == "CT, HEAD/BRAIN WO CONTRAST"
    assert clean_descriptor("t1_vibe_fs_tra_bh_dyn") == "t1_vibe_fs_tra_bh_dyn"
    assert clean_descriptor("Brain MRN 12345678 John Doe 2003-04-05 04.05") == "Brain"
    assert clean_descriptor("Smith^John") == ""


def test_annex_e_table_is_complete_and_consistent_with_the_dictionary():
    from pydicom.datadict import dictionary_keyword

    rules = load_profile().rules
    assert len(rules) >= 300
    for rule in rules:
        if "x" not in rule.tag:
            assert dictionary_keyword(int(rule.tag, 16)) == rule.keyword
    keywords = {rule.keyword for rule in rules}
    assert {
        "PatientName",
        "PatientID",
        "StudyDate",
        "SOPInstanceUID",
        "InstitutionName",
        "DeviceSerialNumber",
        "StudyDescription",
        "PatientBirthDate",
        "OtherPatientIDs",
        "ReferringPhysicianName",
    } <= keywords
