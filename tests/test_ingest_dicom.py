"""DICOM ingest: headers only, one record per instance and per study, bad files refused with a reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest

from medcurate.formats.dicom_json import dataset_from_json, dataset_to_json, instance_text, study_text
from medcurate.sample import dicom as sample_dicom
from medcurate.sample.people import make_cohort
from pipelines.ingest.base import BadInput, RejectedRecord
from pipelines.ingest.dicom import DicomParser

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("dicom-sample")
    phi = sample_dicom.write(out, make_cohort(12, seed=3), seed=3)
    return out / "incoming" / "dicom", phi


def _parse_all(files: list[Path]) -> tuple[DicomParser, dict[str, list], dict[str, str]]:
    parser = DicomParser()
    items: dict[str, list] = {}
    bad: dict[str, str] = {}
    for path in files:
        try:
            items[path.name] = list(parser.parse_file(path))
        except BadInput as exc:
            bad[path.name] = exc.reason
    return parser, items, bad


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("**/*") if p.is_file())


def test_sample_is_small_and_made_of_bundled_files(sample):
    root, phi = sample
    files = _files(root)
    assert sum(p.stat().st_size for p in files) < 3_000_000
    assert len([p for p in files if p.suffix == ".dcm"]) >= 10
    # Stamped cohort identities and kept original ones are both reported as PHI.
    cohort_names = {f"{p.person.last}^{p.person.first}" for p in make_cohort(12, seed=3)}
    assert cohort_names & set(phi)
    assert {"Lastname^Firstname", "id11111", "Sssssss^Jsssss", "021234567"} <= set(phi)


def test_every_instance_becomes_a_header_only_record(sample):
    root, _ = sample
    parser, items, bad = _parse_all(_files(root))
    assert bad == {"export_log.txt": "not_dicom", "truncated_CT_small.dcm": "truncated_dicom"}
    docs = [doc for found in items.values() for doc in found]
    assert len(docs) == 11 and all(doc.doc_type == "dicom_instance" for doc in docs)
    modalities = {doc.metadata["modality"] for doc in docs}
    assert {"CT", "MR", "NM", "US", "SR", "SEG", "ECG", "RTDOSE", "OT"} <= modalities
    for doc in docs:
        header = doc.metadata["extra"]["dicom_json"]
        # No pixel data, overlay, waveform or any other binary value is ever stored.
        assert '"7FE00010"' not in header and "InlineBinary" not in header and "BulkDataURI" not in header
        assert doc.natural_key == doc.metadata["sop_instance_uid"]
        assert instance_text(dataset_from_json(header)) == doc.text
    ct = items["CT_small.dcm"][0]
    assert ct.metadata["event_time"].isoformat() == "2004-01-19T07:27:30"
    assert ct.metadata["burned_in_annotation"] is None
    assert "Modality: CT" in ct.text and "Slice thickness (mm): 5" in ct.text and "kVp: 120" in ct.text
    overlay = json.loads(items["examples_overlay.dcm"][0].metadata["extra"]["dicom_json"])
    assert not any(tag.startswith("6000") and tag.endswith("3000") for tag in overlay)
    ecg = items["waveform_ecg.dcm"][0].metadata["extra"]["dicom_json"]
    assert '"54001010"' not in ecg


def test_stamped_identity_is_rendered_in_the_raw_text(sample):
    root, phi = sample
    _, items, _ = _parse_all(_files(root))
    ct = items["CT_small.dcm"][0]
    ds = dataset_from_json(ct.metadata["extra"]["dicom_json"])
    assert ct.patient_key == ds.PatientID and ds.PatientID in phi
    assert f"Patient name: {ds.PatientName.given_name} {ds.PatientName.family_name}" in ct.text
    assert f"Institution: {ds.InstitutionName}" in ct.text and ds.InstitutionName in phi


def test_studies_summarize_their_instances(sample):
    root, _ = sample
    parser, items, _ = _parse_all(_files(root))
    studies = {doc.natural_key: (path, doc) for path, doc in parser.finalize()}
    assert len(studies) == 10  # 11 instances, the two NM instances share a study
    nm_uid = items["JPEG2000.dcm"][0].metadata["study_uid"]
    path, nm = studies[f"study/{nm_uid}"]
    assert path.name in {"JPEG2000.dcm", "JPEG-lossy.dcm"} and nm.doc_type == "dicom_study"
    assert nm.metadata["extra"]["instance_count"] == 2 and nm.metadata["modality"] == "NM"
    headers = json.loads(nm.metadata["extra"]["dicom_json"])
    assert len(headers) == 2
    datasets = [dataset_from_json(json.dumps(h)) for h in headers]
    assert study_text(datasets) == nm.text
    assert nm.text.startswith("DICOM study (NM): 1 series, 2 instances")
    assert nm.patient_key == items["JPEG2000.dcm"][0].patient_key


@pytest.mark.parametrize("name, fraction", [("CT_small.dcm", 0.5), ("CT_small.dcm", 0.05), ("JPEG2000.dcm", 0.9)])
def test_a_cut_file_is_refused(tmp_path, name, fraction):
    data = (TEST_FILES / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(BadInput) as caught:
        list(DicomParser().parse_file(cut))
    assert caught.value.reason == "truncated_dicom"


def test_an_instance_sent_again_replaces_the_earlier_one(tmp_path):
    first, again = tmp_path / "a.dcm", tmp_path / "b.dcm"
    shutil.copyfile(TEST_FILES / "MR_small.dcm", first)
    shutil.copyfile(TEST_FILES / "MR_small.dcm", again)
    parser = DicomParser()
    docs = [doc for path in (first, again) for doc in parser.parse_file(path)]
    assert docs[0].natural_key == docs[1].natural_key
    [(path, study)] = list(parser.finalize())
    assert path == first and study.metadata["extra"]["instance_count"] == 1


def test_burned_in_annotation_flag_and_missing_uid(tmp_path):
    ds = pydicom.dcmread(TEST_FILES / "SC_rgb_small_odd.dcm")
    ds.BurnedInAnnotation = "YES"
    ds.save_as(tmp_path / "burned.dcm")
    [doc] = DicomParser().parse_file(tmp_path / "burned.dcm")
    assert doc.metadata["burned_in_annotation"] is True and "Burned-in annotation: YES" in doc.text
    [rejected] = DicomParser().parse_file(TEST_FILES / "nested_priv_SQ.dcm")
    assert isinstance(rejected, RejectedRecord) and rejected.reason == "missing_sop_instance_uid"


def test_json_round_trip_drops_bulk_data():
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")  # pixels loaded on purpose, to prove they are dropped
    text = dataset_to_json(ds)
    rebuilt = dataset_from_json(text)
    assert "PixelData" in ds and "PixelData" not in rebuilt
    assert rebuilt.PatientID == ds.PatientID and rebuilt.SOPInstanceUID == ds.SOPInstanceUID
