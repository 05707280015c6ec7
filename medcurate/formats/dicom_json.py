"""DICOM headers as DICOM JSON (PS3.18 F.2) and as readable text.

Ingest stores each header as DICOM JSON in ``extra["dicom_json"]`` and renders its text with ``instance_text`` /
``study_text``; the deid stage rebuilds the ``Dataset`` from that JSON, applies PS3.15 Annex E and renders the
text again with the same functions, so the raw and the de-identified texts have the same shape.

Every binary-valued element (pixels, overlays, waveforms, embedded documents, ICC profiles, private blobs) is
left out of the JSON.  pydicom's value-validation warnings quote element values, i.e. PHI, so they are switched
off while headers are converted and rendered (``quiet_pydicom``).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydicom import config
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pydicom.valuerep import PersonName

BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}  # Float, DoubleFloat and (integer) Pixel Data

# What the readable summaries show, in order: (keyword, label).  Identifying attributes are listed like any
# other: in the raw zone they are rendered as found, after de-identification they are gone or replaced.
PATIENT_FIELDS = (
    ("PatientName", "Patient name"),
    ("PatientID", "Patient ID"),
    ("OtherPatientIDs", "Other patient IDs"),
    ("PatientBirthDate", "Birth date"),
    ("PatientSex", "Sex"),
    ("PatientAge", "Age"),
    ("PatientSize", "Height (m)"),
    ("PatientWeight", "Weight (kg)"),
)
STUDY_FIELDS = (
    ("StudyDescription", "Study"),
    ("StudyDate", "Study date"),
    ("StudyTime", "Study time"),
    ("AccessionNumber", "Accession number"),
    ("StudyID", "Study ID"),
    ("InstitutionName", "Institution"),
    ("InstitutionAddress", "Institution address"),
    ("ReferringPhysicianName", "Referring physician"),
    ("NameOfPhysiciansReadingStudy", "Reading physician"),
)
SERIES_FIELDS = (
    ("Modality", "Modality"),
    ("SeriesDescription", "Series"),
    ("SeriesNumber", "Series number"),
    ("BodyPartExamined", "Body part"),
    ("Laterality", "Laterality"),
    ("ProtocolName", "Protocol"),
    ("PatientPosition", "Patient position"),
    ("Manufacturer", "Manufacturer"),
    ("ManufacturerModelName", "Model"),
    ("StationName", "Station"),
    ("OperatorsName", "Operator"),
    ("PerformingPhysicianName", "Performing physician"),
)
INSTANCE_FIELDS = (
    ("SOPClassUID", "SOP class"),
    ("InstanceNumber", "Instance number"),
    ("ImageType", "Image type"),
    ("Rows", "Rows"),
    ("Columns", "Columns"),
    ("NumberOfFrames", "Frames"),
    ("SliceThickness", "Slice thickness (mm)"),
    ("PixelSpacing", "Pixel spacing (mm)"),
    ("KVP", "kVp"),
    ("XRayTubeCurrent", "Tube current (mA)"),
    ("ConvolutionKernel", "Reconstruction kernel"),
    ("ScanningSequence", "Scanning sequence"),
    ("MagneticFieldStrength", "Field strength (T)"),
    ("RepetitionTime", "Repetition time (ms)"),
    ("EchoTime", "Echo time (ms)"),
    ("FlipAngle", "Flip angle (deg)"),
    ("ContrastBolusAgent", "Contrast agent"),
    ("ImageComments", "Comments"),
    ("BurnedInAnnotation", "Burned-in annotation"),
)
# Structured reports carry their findings in a content tree; deeper levels than this are not rendered.
SR_MAX_DEPTH = 8


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """No value validation (its warnings quote values, i.e. PHI) and no pydicom warnings at all."""
    with config.disable_value_validation(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------------------------------------------- JSON


def _is_binary(vr: str) -> bool:
    return any(v in BINARY_VRS for v in str(vr).split(" or "))


def _json_dict(ds: Dataset) -> dict[str, Any]:
    """``Dataset.to_json_dict`` without bulk data, and without values that cannot be represented.

    Binary values are where pixels, overlays, waveforms, encapsulated PDFs and private blobs live: none of them
    is text, and an overlay can carry burned-in identifiers, so they are never stored.  An element whose value
    does not fit its VR (an IS of '1A') is dropped quietly: pydicom's own error message would quote it.
    """
    out: dict[str, Any] = {}
    for elem in ds:
        if elem.tag in PIXEL_TAGS or _is_binary(elem.VR):
            continue
        key = f"{elem.tag:08X}"
        if elem.VR == "SQ":
            items = [_json_dict(item) for item in elem.value]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        try:
            out[key] = elem.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=0)
        except (ValueError, TypeError, OverflowError):
            continue
    return out


def dataset_to_json(ds: Dataset) -> str:
    """The header as DICOM JSON (PS3.18 F.2), bulk data and unrepresentable values left out."""
    with quiet_pydicom():
        return json.dumps(_json_dict(ds), separators=(",", ":"))


def dataset_from_json(text: str) -> Dataset:
    """Rebuild a header ``Dataset`` from ``dataset_to_json`` output (one instance, not a study array)."""
    with quiet_pydicom():
        return Dataset.from_json(text)


# ------------------------------------------------------------------------------------------------ rendering


def _person(value: Any) -> str:
    name = PersonName(value) if not isinstance(value, PersonName) else value
    parts = [name.name_prefix, name.given_name, name.middle_name, name.family_name, name.name_suffix]
    return " ".join(p.strip() for p in parts if p and p.strip()) or str(name).replace("^", " ").strip()


def _date(value: str) -> str:
    digits = value.replace(".", "").strip()
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}" if re.fullmatch(r"\d{8}", digits) else value.strip()


def _time(value: str) -> str:
    digits = value.replace(":", "").strip()
    found = re.match(r"(\d{2})(\d{2})?(\d{2})?", digits)
    if not found:
        return value.strip()
    return ":".join(g for g in found.groups() if g)


def _number(value: Any) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value).strip()


def attribute_text(ds: Dataset, keyword: str) -> str:
    """One attribute's value as readable text ('' when absent or empty)."""
    elem = ds.data_element(keyword) if keyword in ds else None
    if elem is None or elem.is_empty:
        return ""
    values = elem.value if elem.VM > 1 else [elem.value]
    if elem.VR == "PN":
        out = [_person(v) for v in values]
    elif elem.VR == "DA":
        out = [_date(str(v)) for v in values]
    elif elem.VR == "TM":
        out = [_time(str(v)) for v in values]
    elif elem.VR == "UI":
        out = [UID(str(v)).name for v in values]
    elif elem.VR in ("DS", "FD", "FL", "IS"):
        # A file keeps the decimal string as written ('5.000000'); JSON turns it into a number (5.0).
        out = [_number(v) for v in values]
    else:
        out = [str(v).strip() for v in values]
    return ", ".join(v for v in out if v)


def _field_lines(ds: Dataset, fields: tuple[tuple[str, str], ...]) -> list[str]:
    return [f"{label}: {value}" for keyword, label in fields if (value := attribute_text(ds, keyword))]


def _code_meaning(item: Dataset, sequence: str) -> str:
    seq = item.get(sequence)
    return str(seq[0].get("CodeMeaning", "")).strip() if seq else ""


def _report_lines(items: Any, depth: int = 0) -> list[str]:
    """Structured-report content items as indented 'Concept: value' lines."""
    lines: list[str] = []
    if depth >= SR_MAX_DEPTH:
        return lines
    for item in items or []:
        concept = _code_meaning(item, "ConceptNameCodeSequence")
        kind = item.get("ValueType", "")
        if kind == "TEXT":
            value = str(item.get("TextValue", ""))
        elif kind == "CODE":
            value = _code_meaning(item, "ConceptCodeSequence")
        elif kind == "NUM" and item.get("MeasuredValueSequence"):
            measured = item.MeasuredValueSequence[0]
            unit = _code_meaning(measured, "MeasurementUnitsCodeSequence")
            value = f"{_number(measured.get('NumericValue', ''))} {unit}"
        elif kind == "PNAME":
            value = _person(item.get("PersonName", ""))
        elif kind == "DATE":
            value = _date(str(item.get("Date", "")))
        elif kind == "DATETIME":
            stamp = str(item.get("DateTime", ""))
            value = f"{_date(stamp[:8])} {_time(stamp[8:])}"
        else:
            value = ""
        value = " ".join(value.split())
        if concept or value:
            lines.append("  " * depth + "- " + ": ".join(p for p in (concept, value) if p))
        lines.extend(_report_lines(item.get("ContentSequence"), depth + 1))
    return lines


def instance_text(ds: Dataset) -> str:
    """A readable summary of one instance's header (whatever identifying values it still holds)."""
    with quiet_pydicom():
        modality = attribute_text(ds, "Modality") or "unknown modality"
        lines = [f"DICOM {modality} instance"]
        for fields in (PATIENT_FIELDS, STUDY_FIELDS, SERIES_FIELDS, INSTANCE_FIELDS):
            lines.extend(_field_lines(ds, fields))
        report = _report_lines(ds.get("ContentSequence"))
        if report:
            title = _code_meaning(ds, "ConceptNameCodeSequence") or "Report"
            lines.extend([f"{title}:", *report])
        return "\n".join(lines)


def study_text(datasets: list[Dataset]) -> str:
    """A readable summary of a study: patient and study attributes once, then each series and its instances."""
    with quiet_pydicom():
        series: dict[str, list[Dataset]] = {}
        for ds in datasets:
            series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
        modalities = sorted({m for ds in datasets if (m := attribute_text(ds, "Modality"))})
        lines = [
            f"DICOM study ({', '.join(modalities) or 'unknown modality'}): "
            f"{len(series)} series, {len(datasets)} instances"
        ]
        lines.extend(_field_lines(datasets[0], PATIENT_FIELDS + STUDY_FIELDS))
        for number, members in enumerate(series.values(), start=1):
            first = members[0]
            described = [attribute_text(first, k) for k in ("Modality", "SeriesDescription", "BodyPartExamined")]
            label = attribute_text(first, "SeriesNumber") or str(number)
            lines.append(f"Series {label}: {', '.join(d for d in described if d)} ({len(members)} instances)")
            for ds in members:
                details = [attribute_text(ds, k) for k in ("SOPClassUID", "ImageType")]
                size = "x".join(v for k in ("Rows", "Columns") if (v := attribute_text(ds, k)))
                details.append(f"{size} pixels" if size else "")
                lines.append(
                    f"  Instance {attribute_text(ds, 'InstanceNumber') or '?'}: {', '.join(d for d in details if d)}"
                )
        return "\n".join(lines)
