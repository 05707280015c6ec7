"""Sample DICOM: pydicom's bundled test files, most re-labelled with synthetic cohort identities.

Real headers from many vendors and modalities (CT, MR, NM, US, SR, SEG, RT, ECG waveform, an MR with an
overlay) exercise the parser far better than hand-made ones.  They are copied from the installed pydicom
package, never fetched: ``get_testdata_file`` would download files that are not bundled.

Most copies get a cohort patient's name, MRN, birth date, hospital and attending stamped into their header,
so de-identification is tested against the same synthetic PHI as the notes, FHIR and HL7 sources (the two
instances of one NM study share a patient).  Two copies keep their original identifiers, which are PHI-like
too.  The folder also holds one text file that is not DICOM and one DICOM file cut in half: the ingest stage
must skip both with a reason.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pydicom
from pydicom.valuerep import PersonName

from medcurate.sample.people import Patient, Person

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
# (bundled file, sub-folder under incoming/dicom, cohort slot or None to keep its original identifiers).
# JPEG2000.dcm and JPEG-lossy.dcm are two instances of the same NM study, so they share a slot.
SELECTION = (
    ("CT_small.dcm", "ct", 0),
    ("MR_small.dcm", "mr", 1),
    ("JPEG2000.dcm", "nm", 2),
    ("JPEG-lossy.dcm", "nm", 2),
    ("examples_jpeg2k.dcm", "us", 3),
    ("reportsi.dcm", "sr", 4),
    ("liver_1frame.dcm", "seg", 5),
    ("waveform_ecg.dcm", "ecg", 6),
    ("SC_rgb_small_odd.dcm", "ot", 7),
    ("rtdose.dcm", "rt", None),
    ("examples_overlay.dcm", "mr", None),
)
# Cut in half after stamping, so its identifiers are already among the returned ones.
TRUNCATED_COPY = Path("ct/CT_small.dcm")
NOT_DICOM_TEXT = "PACS export log: 11 instances exported, 0 failed.\n"


def _dicom_name(person: Person) -> str:
    return f"{person.last}^{person.first}"


def _stamp(ds: pydicom.Dataset, patient: Patient) -> list[str]:
    """Write ``patient``'s identifiers into the header; return them as they appear in header and text."""
    ds.PatientName = _dicom_name(patient.person)
    ds.PatientID = patient.mrn
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d")
    ds.InstitutionName = patient.hospital
    ds.ReferringPhysicianName = _dicom_name(patient.attending)
    return [
        _dicom_name(patient.person),
        patient.mrn,
        ds.PatientBirthDate,
        patient.hospital,
        _dicom_name(patient.attending),
        patient.attending.full,
    ]


def _original_identifiers(ds: pydicom.Dataset) -> list[str]:
    """The copied file's own patient name and id, raw ('Family^Given') and as the text renders them."""
    found = [str(ds.get("PatientID", "") or "").strip()]
    name = ds.get("PatientName")
    if name:
        person = PersonName(name)
        found += [str(person), " ".join(p for p in (person.given_name, person.family_name) if p)]
    return [value for value in found if value]


def write(out_dir: Path, cohort: list[Patient], seed: int) -> list[str]:
    """Copy the selection into ``out_dir/incoming/dicom/`` and return the identifiers planted or kept."""
    root = out_dir / "incoming" / "dicom"
    rng = random.Random(seed)
    slots = rng.sample(cohort, k=min(len(cohort), 8)) if cohort else []
    phi: list[str] = []
    for name, folder, slot in SELECTION:
        target = root / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if slot is None or not slots:
            shutil.copyfile(TEST_FILES / name, target)
            phi += _original_identifiers(pydicom.dcmread(target, stop_before_pixels=True))
            continue
        ds = pydicom.dcmread(TEST_FILES / name)
        phi += _stamp(ds, slots[slot % len(slots)])
        ds.save_as(target)
    data = (root / TRUNCATED_COPY).read_bytes()
    (root / TRUNCATED_COPY).with_name(f"truncated_{TRUNCATED_COPY.name}").write_bytes(data[: len(data) // 2])
    (root / "export_log.txt").write_text(NOT_DICOM_TEXT)
    return sorted(set(phi))
