"""The bundled sample corpus: generated, deterministic, synthetic end to end.

``generate_sample(out_dir)`` writes input files of every source kind under ``out_dir/incoming/``, a corpus
spec ``out_dir/sample.yaml`` that names them, and the gold standard under ``out_dir/gold/``:

* ``notes_gold.jsonl``: the synthetic clinical notes with their PHI spans (the ``deid-eval`` format);
* ``phi_strings.json``: every identifier planted anywhere in the sample (names, MRNs, phones, addresses,
  dates of birth, ...).  None of them may appear in a shard, a log or a report.

Each kind has one writer module with ``write(out_dir, cohort, seed) -> list[str]`` returning the PHI strings
it planted.  The sample also contains a few deliberately broken files so the demo shows quarantine at work.
"""

from __future__ import annotations

import json
from pathlib import Path

from medcurate.sample import dicom, fhir, hl7, literature, notes
from medcurate.sample.people import make_cohort

SAMPLE_PATIENTS = 12
SAMPLE_SEED = 20261128

SAMPLE_SPEC = """\
# The bundled sample corpus: every value is synthetic.  Paths resolve against this file's directory.
name: medcurate-sample
data_root: data
sources:
  - name: notes
    kind: notes_csv
    paths: ["incoming/notes/*.csv", "incoming/notes/*.csv.gz"]
    license: synthetic
    legal_basis: waiver
    owner: medcurate sample generator
  - name: ehr_fhir
    kind: fhir
    paths: ["incoming/fhir/*.json", "incoming/fhir/*.ndjson"]
    license: synthetic
    legal_basis: waiver
    owner: medcurate sample generator
  - name: lab_hl7
    kind: hl7v2
    paths: ["incoming/hl7/*.hl7"]
    license: synthetic
    legal_basis: waiver
    owner: medcurate sample generator
  - name: imaging
    kind: dicom
    paths: ["incoming/dicom/**/*"]
    license: pydicom test files (MIT and public test data)
    legal_basis: waiver
    owner: pydicom
  - name: pubmed
    kind: pubmed
    paths: ["incoming/pubmed/*.xml", "incoming/pubmed/*.xml.gz"]
    license: public-domain
    legal_basis: public-domain
    owner: medcurate sample generator
  - name: pmc_oa
    kind: pmc
    paths: ["incoming/pmc/*.nxml", "incoming/pmc/*.xml"]
    license: CC-BY-4.0
    legal_basis: open-license
    owner: medcurate sample generator
tokenizer:
  vocab_size: 4096
seq_len: 512
"""

WRITERS = {"notes": notes, "fhir": fhir, "hl7": hl7, "dicom": dicom, "literature": literature}


def generate_sample(out_dir: Path, n_patients: int = SAMPLE_PATIENTS, seed: int = SAMPLE_SEED) -> Path:
    """Write the sample corpus under ``out_dir`` and return the path of its spec."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cohort = make_cohort(n_patients, seed)
    planted: set[str] = set()
    for writer in WRITERS.values():
        planted.update(writer.write(out_dir, cohort, seed))
    for patient in cohort:
        planted.update(patient.phi_strings())
    gold = out_dir / "gold"
    gold.mkdir(exist_ok=True)
    (gold / "phi_strings.json").write_text(json.dumps(sorted(s for s in planted if s), indent=1))
    spec_path = out_dir / "sample.yaml"
    spec_path.write_text(SAMPLE_SPEC)
    return spec_path
