"""DICOM headers -> one document per instance, plus one summary document per study.

Only headers are read (``stop_before_pixels``): pixels are never loaded, and every binary-valued element
(overlays, waveforms, embedded documents, ICC profiles, private blobs) is dropped from what is stored.  The
stored header travels as DICOM JSON in ``extra["dicom_json"]`` so that de-identification can rebuild the
``Dataset``, apply PS3.15 Annex E, and re-render the text with ``instance_text`` / ``study_text``
(``medcurate.formats.dicom_json``, shared by both stages): the raw zone's text is a rendering of the raw header,
identifying values included.

pydicom tolerates truncated files silently (a cut file reads as a shorter header), so completeness is
checked here: the last element read must end exactly at the end of the file, or the pixel data element that
follows must fit in it (for encapsulated pixel data by seeking from fragment header to fragment header,
without reading a pixel byte).

pydicom's value-validation warnings quote element values, i.e. PHI, so they are switched off while headers
are read and rendered.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from medcurate.core.schema import DICOM_JSON_KEY, Document
from medcurate.formats.dicom_json import (
    PIXEL_TAGS,
    attribute_text,
    dataset_from_json,
    dataset_to_json,
    instance_text,
    quiet_pydicom,
    study_text,
)
from pipelines.ingest.base import BadInput, ParsedItem, Parser, RejectedRecord
from pipelines.ingest.limits import RECORD_TOO_LARGE, Limits

ITEM, SEQUENCE_DELIMITER = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)
UNDEFINED_LENGTH = 0xFFFFFFFF


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
        "modality": attribute_text(ds, "Modality") or None,
        "study_uid": _uid(ds, "StudyInstanceUID"),
        "series_uid": _uid(ds, "SeriesInstanceUID"),
        "sop_instance_uid": _uid(ds, "SOPInstanceUID"),
        "burned_in_annotation": _burned_in(ds),
        "event_time": _event_time(ds),
        "extra": {
            DICOM_JSON_KEY: dataset_to_json(ds),
            "sop_class": attribute_text(ds, "SOPClassUID") or None,
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
                DICOM_JSON_KEY: "[" + ",".join(headers) + "]",
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
                DICOM_JSON_KEY
            ]
        yield document

    def finalize(self) -> Iterator[tuple[Path, Document]]:
        for study_uid, study in self._studies.items():
            if study.headers:
                yield study.first_path, study_document(study_uid, list(study.headers.values()))
