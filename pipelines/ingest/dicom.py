"""DICOM headers -> one document per instance, plus one summary document per study.

Only headers are read (``stop_before_pixels``): pixels are never loaded, and every binary-valued element
(overlays, waveforms, embedded documents, ICC profiles, private blobs) is dropped from what is stored.  The
stored header travels as DICOM JSON in ``extra["dicom_json"]`` so that de-identification can rebuild the
``Dataset``, apply PS3.15 Annex E, and re-render the text with ``instance_text`` / ``study_text``: the raw
zone's text is a rendering of the raw header, identifying values included.

pydicom tolerates truncated files silently (a cut file reads as a shorter header), so completeness is
checked here: the last element read must end exactly at the end of the file, or the pixel data element that
follows must fit in it (for encapsulated pixel data by seeking from fragment header to fragment header,
without reading a pixel byte).

pydicom's value-validation warnings quote element values, i.e. PHI, so they are switched off while headers
are read and rendered.
"""

from __future__ import annotations

import json
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, PersonName

from medcurate.schema import Document
from pipelines.ingest.base import BadInput, ParsedItem, Parser, RejectedRecord
from pipelines.ingest.limits import RECORD_TOO_LARGE, Limits

BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}  # Float, DoubleFloat and (integer) Pixel Data
ITEM, SEQUENCE_DELIMITER = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)
UNDEFINED_LENGTH = 0xFFFFFFFF

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


def _format(ds: Dataset, keyword: str) -> str:
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
    return [f"{label}: {value}" for keyword, label in fields if (value := _format(ds, keyword))]


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
        modality = _format(ds, "Modality") or "unknown modality"
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
        modalities = sorted({m for ds in datasets if (m := _format(ds, "Modality"))})
        lines = [
            f"DICOM study ({', '.join(modalities) or 'unknown modality'}): "
            f"{len(series)} series, {len(datasets)} instances"
        ]
        lines.extend(_field_lines(datasets[0], PATIENT_FIELDS + STUDY_FIELDS))
        for number, members in enumerate(series.values(), start=1):
            first = members[0]
            described = [_format(first, k) for k in ("Modality", "SeriesDescription", "BodyPartExamined")]
            label = _format(first, "SeriesNumber") or str(number)
            lines.append(f"Series {label}: {', '.join(d for d in described if d)} ({len(members)} instances)")
            for ds in members:
                details = [_format(ds, k) for k in ("SOPClassUID", "ImageType")]
                size = "x".join(v for k in ("Rows", "Columns") if (v := _format(ds, k)))
                details.append(f"{size} pixels" if size else "")
                lines.append(f"  Instance {_format(ds, 'InstanceNumber') or '?'}: {', '.join(d for d in details if d)}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------- reading the file


def _check_pixel_element(fp: BinaryIO, size: int, ds: Dataset) -> None:
    """The pixel data element at ``fp``'s position must fit in the file; its bytes are skipped, not read."""
    implicit, little = ds.original_encoding
    endian = "<" if little else ">"
    start = fp.tell()
    header = fp.read(12)
    if len(header) < 8:
        raise BadInput("truncated_dicom", f"pixel data header cut at offset {start}")
    # Some writers switch to implicit VR mid-file; pydicom reads on, and so must this check.
    implicit = implicit or not (b"AA" <= header[4:6] <= b"ZZ")
    group, element = struct.unpack(f"{endian}HH", header[:4])
    if (group << 16 | element) not in PIXEL_TAGS:
        raise BadInput("unreadable_dicom", f"unexpected element at offset {start}")
    if implicit:
        (length,), value_start = struct.unpack(f"{endian}L", header[4:8]), start + 8
    elif header[4:6].decode("ascii", "replace") in EXPLICIT_VR_LENGTH_32:
        if len(header) < 12:
            raise BadInput("truncated_dicom", f"pixel data header cut at offset {start}")
        (length,), value_start = struct.unpack(f"{endian}L", header[8:12]), start + 12
    else:
        (length,), value_start = struct.unpack(f"{endian}H", header[6:8]), start + 8
    if length != UNDEFINED_LENGTH:
        if value_start + length > size:
            raise BadInput("truncated_dicom", f"pixel data declares {length} bytes, file ends first")
        return
    # Encapsulated pixel data: hop over the fragments until the sequence delimiter.
    position = value_start
    while True:
        fp.seek(position)
        item = fp.read(8)
        if len(item) < 8:
            raise BadInput("truncated_dicom", "encapsulated pixel data ends without its delimiter")
        item_group, item_element, item_length = struct.unpack(f"{endian}HHL", item)
        if (item_group, item_element) == SEQUENCE_DELIMITER:
            return
        if (item_group, item_element) != ITEM:
            raise BadInput("truncated_dicom", f"no pixel data fragment at offset {position}")
        position += 8 + item_length
        if position > size:
            raise BadInput("truncated_dicom", f"pixel data fragment runs past the end of the file ({size} bytes)")


def _check_complete(fp: BinaryIO, size: int, ds: Dataset) -> None:
    """Raise ``BadInput("truncated_dicom")`` when the file was cut: pydicom itself reads on silently."""
    if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return  # the whole dataset went through zlib, which already refused a cut stream
    if fp.tell() < size:
        _check_pixel_element(fp, size, ds)
        return
    if not len(ds):
        return
    last = ds.get_item(max(ds.keys()))
    end = getattr(last, "value_tell", None)
    if end is not None and last.length != UNDEFINED_LENGTH and end + last.length != size:
        raise BadInput("truncated_dicom", f"last header element does not end at the end of file ({size} bytes)")


def _check_inflated_size(path: Path, max_bytes: int) -> None:
    """A Deflated Explicit VR file's dataset must inflate to at most ``max_bytes``: pydicom inflates the whole
    of it in memory before reading a single element, so a few MB of deflate could otherwise expand to GBs.
    Inflated here a MB at a time and thrown away; only the size is kept."""
    meta = read_file_meta_info(path)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    if "FileMetaInformationGroupLength" not in meta:
        raise BadInput("unreadable_dicom", "deflated dataset without a file meta group length")
    # preamble and 'DICM' (132 bytes), the group length element (12 bytes), then the rest of the meta group
    inflate, size = zlib.decompressobj(-zlib.MAX_WBITS), 0
    with path.open("rb") as fp:
        fp.seek(144 + meta.FileMetaInformationGroupLength)
        while chunk := fp.read(1 << 20):
            while chunk and size <= max_bytes:
                size += len(inflate.decompress(chunk, 1 << 20))
                chunk = inflate.unconsumed_tail
            if size > max_bytes:
                raise BadInput(RECORD_TOO_LARGE, f"the deflated dataset inflates to more than {max_bytes} bytes")


def read_header(path: Path, limits: Limits) -> Dataset:
    """The file's header (no pixels), or ``BadInput`` when it is not DICOM, cut short, unreadable, or deflated
    past the record cap."""
    size = path.stat().st_size
    with path.open("rb") as fp, quiet_pydicom():
        try:
            _check_inflated_size(path, limits.max_record_bytes)
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
            _check_complete(fp, size, ds)
        except InvalidDicomError:
            raise BadInput("not_dicom", "no DICOM preamble and 'DICM' prefix") from None
        except (EOFError, OSError):
            raise BadInput("truncated_dicom", f"header ends before its last element ({size} bytes)") from None
        except (ValueError, KeyError, NotImplementedError, struct.error, zlib.error) as exc:
            raise BadInput("unreadable_dicom", f"header could not be decoded ({type(exc).__name__})") from None
    return ds


# ------------------------------------------------------------------------------------------------ records


def _uid(ds: Dataset, keyword: str) -> str | None:
    return str(ds.get(keyword, "") or "").strip() or None


def _event_time(ds: Dataset) -> datetime | None:
    """StudyDate + StudyTime (old ACR-NEMA '.'/':' separators tolerated); None when not a real date."""
    date = str(ds.get("StudyDate", "") or "").replace(".", "").strip()
    if not re.fullmatch(r"\d{8}", date):
        return None
    clock = re.match(r"(\d{2})(\d{2})?(\d{2})?", str(ds.get("StudyTime", "") or "").replace(":", "").strip())
    hour, minute, second = (int(g) if g else 0 for g in clock.groups()) if clock else (0, 0, 0)
    try:
        return datetime(int(date[:4]), int(date[4:6]), int(date[6:8]), hour, minute, second)
    except ValueError:
        try:
            return datetime(int(date[:4]), int(date[4:6]), int(date[6:8]))
        except ValueError:
            return None


def _burned_in(ds: Dataset) -> bool | None:
    value = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    return {"YES": True, "NO": False}.get(value)


def _any_burned_in(flags: list[bool | None]) -> bool | None:
    """A study is burned-in if any instance is, clean only if every instance says so, else unknown."""
    if any(flag is True for flag in flags):
        return True
    return False if flags and all(flag is False for flag in flags) else None


def instance_document(ds: Dataset) -> Document:
    """One instance header -> ``Document``."""
    transfer_syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    metadata = {
        "modality": _format(ds, "Modality") or None,
        "study_uid": _uid(ds, "StudyInstanceUID"),
        "series_uid": _uid(ds, "SeriesInstanceUID"),
        "sop_instance_uid": _uid(ds, "SOPInstanceUID"),
        "burned_in_annotation": _burned_in(ds),
        "event_time": _event_time(ds),
        "extra": {
            "dicom_json": dataset_to_json(ds),
            "sop_class": _format(ds, "SOPClassUID") or None,
            "transfer_syntax": UID(transfer_syntax).name if transfer_syntax else None,
        },
    }
    return Document(
        natural_key=str(metadata["sop_instance_uid"]),
        position="instance",
        record_index=0,
        doc_type="dicom_instance",
        text=instance_text(ds),
        patient_key=str(ds.get("PatientID", "") or "").strip() or None,
        metadata=metadata,
    )


def study_document(study_uid: str, headers: list[str]) -> Document:
    """The study summary from its instances' DICOM JSON headers."""
    datasets = [dataset_from_json(h) for h in headers]
    burned = [_burned_in(ds) for ds in datasets]
    modalities = sorted({m for ds in datasets if (m := str(ds.get("Modality", "") or "").strip())})
    with quiet_pydicom():
        metadata = {
            "modality": ",".join(modalities) or None,
            "study_uid": study_uid,
            "burned_in_annotation": _any_burned_in(burned),
            "event_time": _event_time(datasets[0]),
            "extra": {
                "dicom_json": "[" + ",".join(headers) + "]",
                "series_count": len({_uid(ds, "SeriesInstanceUID") for ds in datasets}),
                "instance_count": len(datasets),
            },
        }
        patient_key = str(datasets[0].get("PatientID", "") or "").strip() or None
    return Document(
        natural_key=f"study/{study_uid}",
        position="study",
        record_index=0,
        doc_type="dicom_study",
        text=study_text(datasets),
        patient_key=patient_key,
        metadata=metadata,
    )


@dataclass
class _Study:
    first_path: Path
    headers: dict[str, str] = field(default_factory=dict)  # SOPInstanceUID -> DICOM JSON, in arrival order


class DicomParser(Parser):
    """One file = one instance; studies are assembled across files and emitted by ``finalize``.

    An instance sent again (same SOPInstanceUID in a later file) replaces the earlier one, in its study as in
    the raw zone, where the ingest stage keeps the latest version of a document.
    """

    kind = "dicom"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self._studies: dict[str, _Study] = {}
        self._study_of: dict[str, str] = {}  # SOPInstanceUID -> StudyInstanceUID

    def parse_file(self, path: Path) -> Iterator[ParsedItem]:
        ds = read_header(path, self.limits)
        with quiet_pydicom():
            sop_uid = _uid(ds, "SOPInstanceUID")
            study_uid = _uid(ds, "StudyInstanceUID")
            document = instance_document(ds) if sop_uid else None
        if document is None:
            yield RejectedRecord("instance", 0, "missing_sop_instance_uid", "header has no SOPInstanceUID")
            return
        earlier_study = self._study_of.pop(sop_uid, None)
        if earlier_study is not None:
            del self._studies[earlier_study].headers[sop_uid]
        if study_uid is not None:
            self._study_of[sop_uid] = study_uid
            self._studies.setdefault(study_uid, _Study(path)).headers[sop_uid] = document.metadata["extra"][
                "dicom_json"
            ]
        yield document

    def finalize(self) -> Iterator[tuple[Path, Document]]:
        for study_uid, study in self._studies.items():
            if study.headers:
                yield study.first_path, study_document(study_uid, list(study.headers.values()))
