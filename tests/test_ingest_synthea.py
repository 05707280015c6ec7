"""Synthea-style FHIR bundles, every resource type a real Synthea export holds, through ingest, deid and curate.

Real Synthea bundles carry referenced context (Organization, Practitioner, PractitionerRole, Location,
Medication), billing (Claim, ExplanationOfBenefit), Provenance and the clinical resources of a whole life.
Each patient's timeline must be published with every clinical resource in it, none of the other resources
quarantined, and no name, address, phone or device identifier planted anywhere in a bundle may reach the
de-identified zone.  The bundles are generated here; as in Synthea, their file names are the patients' names.
"""

from __future__ import annotations

import base64
import json
import uuid

import pyarrow.parquet as pq
import pytest

from medcurate.core.context import StageReport
from medcurate.core.quarantine import QuarantineWriter
from medcurate.core.schema import DEID_DOCUMENT_SCHEMA, RAW_DOCUMENT_SCHEMA
from medcurate.core.zones import read_zone
from medcurate.runner import open_run, run_stage
from pipelines.quality.phi_gate import RawPatientIndex, ResidualPhiGate, load_gate_config
from pipelines.quality.steps import Ledger

PATIENTS = [("Thaddeus", "Quimby"), ("Marisol", "Okonkwo-Hale"), ("Evander", "Lindqvist")]
SYNTHEA = "https://github.com/synthetichealth/synthea"
SNOMED = "http://snomed.info/sct"
# What the timeline of every patient shows for the resource types this test is about.
TIMELINE_LINES = [
    "AllergyIntolerance: Allergy to peanut (SNOMED 91935009) active criticality high - reaction: Hives",
    "CarePlan: Diabetes self management plan active - activities: Diabetic diet",
    "CareTeam: Diabetes mellitus type 2 active - roles: Patient, Healthcare professional (occupation)",
    "Goal: Hemoglobin A1c total in Blood < 7.0 active",
    "Device: Blood glucose meter (SNOMED 337414009) active",
    "ImagingStudy: Plain chest X-ray (DX) of Chest available - 1 series, 1 instances",
    "MedicationAdministration: Insulin glargine 100 UNT/ML (RxNorm 847230) completed - dose 10 U",
    "SupplyDelivery: Glucose test strips (SNOMED 337388004) x 50 completed",
    "Procedure: Hemoglobin A1c measurement (SNOMED 43396009) completed",
    "Immunization: Influenza vaccine (CVX 140) completed",
]


def _cc(code: str, display: str, system: str = SNOMED) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _phi(i: int, given: str, family: str) -> dict[str, str]:
    """The identifiers planted in patient ``i``'s bundle (each distinct and easy to search for)."""
    return {
        "patient_given": f"{given}{100 + i}",
        "patient_family": f"{family}{200 + i}",
        "street": f"{4417 + i} Wrenfield Lane",
        "city": "Marblehead Quay",
        "phone": f"617-555-01{40 + i}",
        "email": f"{given.lower()}.{family.lower()}@example.org",
        "practitioner_given": f"Ottoline{300 + i}",
        "practitioner_family": f"Vasquez-Brandt{400 + i}",
        "practitioner_phone": f"781-555-02{20 + i}",
        "practitioner_street": f"{88 + i} Kestrel Court",
        "org_street": f"{12 + i} Harborview Terrace",
        "org_phone": f"978-555-03{30 + i}",
        "location_street": f"{901 + i} Saltmarsh Road",
        "device_serial": f"SN-77{i}Q-4491",
        "device_udi_di": f"0858137600{i}123",
    }


def patient_address(i: int, phi: dict[str, str]) -> dict:
    """As in Synthea: the state written out, the postal code missing for some patients."""
    address = {"line": [phi["street"]], "city": phi["city"], "state": "Massachusetts", "country": "US"}
    return address | ({"postalCode": "01945"} if i % 2 else {})


def synthea_bundle(i: int, given: str, family: str) -> tuple[str, dict, dict[str, str]]:
    """(patient id, transaction Bundle, planted PHI) for one patient, shaped like Synthea's R4 output."""
    phi = _phi(i, given, family)
    pid = str(uuid.UUID(int=1000 + i))
    patient_ref = {"reference": f"urn:uuid:{pid}", "display": f"Mr. {phi['patient_given']} {phi['patient_family']}"}
    org_ref = {"reference": f"Organization?identifier={SYNTHEA}|org-{i}", "display": "QUINCY HARBOR MEDICAL"}
    doctor = f"Dr. {phi['practitioner_given']} {phi['practitioner_family']}"
    practitioner_ref = {
        "reference": f"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|99990{i}",
        "display": doctor,
    }
    encounter_ref = {"reference": f"urn:uuid:enc-{i}"}
    day = f"2021-0{i + 3}-1{i}"
    note = "Follow-up for type 2 diabetes. A1c improving on basal insulin. Continue current plan."
    resources = [
        {
            "resourceType": "Patient",
            "id": pid,
            "text": {"status": "generated", "div": f"<div>{phi['patient_given']} {phi['patient_family']}</div>"},
            "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": f"MRN-{i}0042"}],
            "name": [{"use": "official", "given": [phi["patient_given"]], "family": phi["patient_family"]}],
            "telecom": [{"system": "phone", "value": phi["phone"]}, {"system": "email", "value": phi["email"]}],
            "gender": "male",
            "birthDate": f"196{i}-05-0{i + 1}",
            "address": [patient_address(i, phi)],
        },
        {
            "resourceType": "Organization",
            "id": f"org-{i}",
            "name": "QUINCY HARBOR MEDICAL",
            "telecom": [{"system": "phone", "value": phi["org_phone"]}],
            "address": [{"line": [phi["org_street"]], "city": "Quincy", "state": "MA", "postalCode": "02169"}],
        },
        {
            "resourceType": "Practitioner",
            "id": f"pr-{i}",
            "name": [{"given": [phi["practitioner_given"]], "family": phi["practitioner_family"], "prefix": ["Dr."]}],
            "telecom": [{"system": "phone", "value": phi["practitioner_phone"]}],
            "address": [{"line": [phi["practitioner_street"]], "city": "Quincy", "state": "MA"}],
        },
        {
            "resourceType": "PractitionerRole",
            "id": f"role-{i}",
            "practitioner": practitioner_ref,
            "organization": org_ref,
            "telecom": [{"system": "phone", "value": phi["practitioner_phone"]}],
        },
        {
            "resourceType": "Location",
            "id": f"loc-{i}",
            "name": "QUINCY HARBOR MEDICAL",
            "address": {"line": [phi["location_street"]], "city": "Quincy", "state": "MA"},
            "position": {"longitude": -71.0, "latitude": 42.25},
        },
        {"resourceType": "Medication", "id": f"med-{i}", "code": _cc("847230", "Insulin glargine")},
        {
            "resourceType": "Encounter",
            "id": f"enc-{i}",
            "status": "finished",
            "class": {"code": "AMB"},
            "type": [_cc("185349003", "Encounter for check up")],
            "subject": patient_ref,
            "participant": [{"individual": practitioner_ref}],
            "period": {"start": f"{day}T09:00:00-05:00", "end": f"{day}T09:30:00-05:00"},
            "location": [{"location": {"reference": f"Location?identifier={SYNTHEA}|loc-{i}", "display": "QUINCY"}}],
            "serviceProvider": org_ref,
        },
        {
            "resourceType": "Condition",
            "id": f"cond-{i}",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": _cc("44054006", "Diabetes mellitus type 2"),
            "subject": patient_ref,
            "encounter": encounter_ref,
            "onsetDateTime": f"{day}T09:00:00-05:00",
        },
        {
            "resourceType": "Observation",
            "id": f"obs-{i}",
            "status": "final",
            "code": _cc("4548-4", "Hemoglobin A1c", "http://loinc.org"),
            "subject": patient_ref,
            "effectiveDateTime": f"{day}T09:10:00-05:00",
            "valueQuantity": {"value": 7.4, "unit": "%"},
        },
        {
            "resourceType": "MedicationRequest",
            "id": f"mr-{i}",
            "status": "active",
            "medicationReference": {"reference": f"urn:uuid:med-{i}"},
            "subject": patient_ref,
            "authoredOn": f"{day}T09:20:00-05:00",
            "requester": practitioner_ref,
        },
        {
            "resourceType": "MedicationAdministration",
            "id": f"ma-{i}",
            "status": "completed",
            "medicationCodeableConcept": _cc(
                "847230", "Insulin glargine 100 UNT/ML", "http://www.nlm.nih.gov/research/umls/rxnorm"
            ),
            "subject": patient_ref,
            "context": encounter_ref,
            "effectiveDateTime": f"{day}T09:25:00-05:00",
            "dosage": {"dose": {"value": 10, "unit": "U"}},
        },
        {
            "resourceType": "Procedure",
            "id": f"proc-{i}",
            "status": "completed",
            "code": _cc("43396009", "Hemoglobin A1c measurement"),
            "subject": patient_ref,
            "performedPeriod": {"start": f"{day}T09:05:00-05:00", "end": f"{day}T09:08:00-05:00"},
            "location": {"reference": f"Location?identifier={SYNTHEA}|loc-{i}", "display": "QUINCY"},
        },
        {
            "resourceType": "Immunization",
            "id": f"imm-{i}",
            "status": "completed",
            "vaccineCode": _cc("140", "Influenza vaccine", "http://hl7.org/fhir/sid/cvx"),
            "patient": patient_ref,
            "occurrenceDateTime": f"{day}T09:15:00-05:00",
        },
        {
            "resourceType": "AllergyIntolerance",
            "id": f"all-{i}",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "type": "allergy",
            "category": ["food"],
            "criticality": "high",
            "code": _cc("91935009", "Allergy to peanut"),
            "patient": patient_ref,
            "recordedDate": f"{day}T09:00:00-05:00",
            "reaction": [{"manifestation": [_cc("247472004", "Hives")]}],
        },
        {
            "resourceType": "CarePlan",
            "id": f"cp-{i}",
            "text": {"status": "generated", "div": f"<div>Care plan for {phi['patient_given']}</div>"},
            "status": "active",
            "intent": "order",
            "category": [_cc("698360004", "Diabetes self management plan")],
            "subject": patient_ref,
            "period": {"start": f"{day}T09:30:00-05:00"},
            "careTeam": [{"reference": f"urn:uuid:ct-{i}"}],
            "activity": [{"detail": {"code": _cc("160670007", "Diabetic diet"), "status": "in-progress"}}],
        },
        {
            "resourceType": "CareTeam",
            "id": f"ct-{i}",
            "status": "active",
            "subject": patient_ref,
            "period": {"start": f"{day}T09:30:00-05:00"},
            "participant": [
                {"role": [_cc("116154003", "Patient")], "member": patient_ref},
                {"role": [_cc("223366009", "Healthcare professional (occupation)")], "member": practitioner_ref},
            ],
            "reasonCode": [_cc("44054006", "Diabetes mellitus type 2")],
            "managingOrganization": [org_ref],
        },
        {
            "resourceType": "Goal",
            "id": f"goal-{i}",
            "lifecycleStatus": "active",
            "description": {"text": "Hemoglobin A1c total in Blood < 7.0"},
            "subject": patient_ref,
        },
        {
            "resourceType": "Device",
            "id": f"dev-{i}",
            "udiCarrier": [{"deviceIdentifier": phi["device_udi_di"], "carrierHRF": f"(01){phi['device_udi_di']}"}],
            "status": "active",
            "distinctIdentifier": phi["device_udi_di"],
            "serialNumber": phi["device_serial"],
            "lotNumber": f"LOT-{phi['device_serial']}",
            "manufactureDate": "2020-01-05T00:00:00-05:00",
            "deviceName": [{"name": "Blood glucose meter", "type": "user-friendly-name"}],
            "type": _cc("337414009", "Blood glucose meter"),
            "patient": patient_ref,
        },
        {
            "resourceType": "ImagingStudy",
            "id": f"img-{i}",
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:oid:1.2.840.99999999.{i}.1"}],
            "status": "available",
            "subject": patient_ref,
            "encounter": encounter_ref,
            "started": f"{day}T09:12:00-05:00",
            "numberOfSeries": 1,
            "numberOfInstances": 1,
            "procedureCode": [_cc("399208008", "Plain chest X-ray")],
            "location": {"reference": f"Location?identifier={SYNTHEA}|loc-{i}", "display": "QUINCY"},
            "series": [
                {
                    "uid": f"1.2.840.99999999.{i}.1.1",
                    "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "DX"},
                    "bodySite": {"system": SNOMED, "code": "51185008", "display": "Chest"},
                    "instance": [{"uid": f"1.2.840.99999999.{i}.1.1.1", "number": 1}],
                }
            ],
        },
        {
            "resourceType": "SupplyDelivery",
            "id": f"sd-{i}",
            "status": "completed",
            "patient": patient_ref,
            "type": {"coding": [{"code": "device"}]},
            "suppliedItem": {"quantity": {"value": 50}, "itemCodeableConcept": _cc("337388004", "Glucose test strips")},
            "occurrenceDateTime": f"{day}T09:35:00-05:00",
        },
        {
            "resourceType": "DocumentReference",
            "id": f"doc-{i}",
            "status": "current",
            "type": _cc("34117-2", "History and physical note", "http://loinc.org"),
            "subject": patient_ref,
            "author": [practitioner_ref],
            "custodian": org_ref,
            "date": f"{day}T09:40:00-05:00",
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain; charset=utf-8",
                        "data": base64.b64encode(note.encode()).decode(),
                    }
                }
            ],
        },
        {
            "resourceType": "Claim",
            "id": f"claim-{i}",
            "status": "active",
            "patient": patient_ref,
            "provider": org_ref,
            "billablePeriod": {"start": f"{day}T09:00:00-05:00"},
            "total": {"value": 129.16, "currency": "USD"},
        },
        {
            "resourceType": "ExplanationOfBenefit",
            "id": f"eob-{i}",
            "status": "active",
            "patient": patient_ref,
            "provider": practitioner_ref,
            "insurer": {"display": "Medicaid"},
            "claim": {"reference": f"urn:uuid:claim-{i}"},
        },
        {
            "resourceType": "Provenance",
            "id": f"prov-{i}",
            "target": [{"reference": f"urn:uuid:{pid}"}],
            "recorded": f"{day}T09:45:00-05:00",
            "agent": [{"who": practitioner_ref, "onBehalfOf": org_ref}],
        },
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in resources
        ],
    }
    return pid, bundle, phi


@pytest.fixture(scope="module")
def synthea_run(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("synthea")
    (root / "fhir").mkdir()
    planted: list[str] = []
    for i, (given, family) in enumerate(PATIENTS):
        pid, bundle, phi = synthea_bundle(i, given, family)
        # Synthea names each bundle after its patient.
        (root / "fhir" / f"{phi['patient_given']}_{phi['patient_family']}_{pid}.json").write_text(json.dumps(bundle))
        planted += phi.values()
    (root / "spec.yaml").write_text(
        "sources:\n  - {name: synthea, kind: fhir, paths: ['fhir/*.json'], license: synthetic, legal_basis: waiver}\n"
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDCURATE_PSEUDONYM_KEY", "test-key-0123456789abcdef")
    try:
        ctx = open_run(root / "spec.yaml", data_root=root / "data")
        ingest = run_stage(ctx, "ingest")
        run_stage(ctx, "validate_raw")
        run_stage(ctx, "deid")
    finally:
        mp.undo()
    return ctx, ingest, planted


def test_no_synthea_resource_is_quarantined_and_skips_are_counted(synthea_run):
    ctx, ingest, _ = synthea_run
    assert not list(ctx.zones.quarantine.rglob("*.parquet"))
    assert not ingest.sources["synthea"].removed
    n = len(PATIENTS)
    # Organization, Practitioner, PractitionerRole, Location, Medication; Claim, EOB; Provenance, per bundle.
    assert ingest.details["skipped"] == {"synthea": {"billing": 2 * n, "provenance": n, "referenced_context": 5 * n}}


def test_every_patients_timeline_is_published_with_every_clinical_resource(synthea_run):
    ctx, _, _ = synthea_run
    rows = read_zone(ctx.zones.deid / "synthea", DEID_DOCUMENT_SCHEMA).to_pylist()
    timelines = [r for r in rows if r["doc_type"] == "patient_timeline"]
    assert len(timelines) == len(PATIENTS)
    assert len({r["patient_pseudonym"] for r in timelines}) == len(PATIENTS)
    for timeline in timelines:
        lines = [line.split(" ", 1)[1] for line in timeline["text"].splitlines() if line[:2] in ("20", "un")]
        for expected in TIMELINE_LINES:
            assert expected in lines
    assert sum(r["doc_type"] == "clinical_note" for r in rows) == len(PATIENTS)


def test_no_planted_name_address_phone_or_device_id_reaches_the_deid_zone(synthea_run):
    ctx, _, planted = synthea_run
    rows = read_zone(ctx.zones.deid / "synthea", DEID_DOCUMENT_SCHEMA).to_pylist()
    assert rows
    # Every column, the source file too: it is named by its opaque id, not by the bundle's patient-named path.
    published = json.dumps(rows, default=str)
    assert [value for value in planted if value in published] == []
    assert "Okonkwo" not in published and "Vasquez" not in published and "Wrenfield" not in published


def test_the_phi_gate_blocks_no_timeline_for_what_the_policy_keeps_and_hits_what_it_removes(synthea_run):
    ctx, _, _ = synthea_run
    config = load_gate_config()
    gate = ResidualPhiGate(RawPatientIndex.from_raw_zone(ctx.zones, ctx.spec, config), config)
    rows = read_zone(ctx.zones.deid / "synthea", DEID_DOCUMENT_SCHEMA).to_pylist()
    timelines = [r for r in rows if r["doc_type"] == "patient_timeline"]
    assert all("Massachusetts" in r["text"] for r in timelines)  # the state is kept by the policy...
    ledger = Ledger(QuarantineWriter(ctx.zones, "gate-check", ctx.run_id), StageReport("curate", ctx.run_id))
    assert [r["doc_id"] for r in gate.run(rows, ledger)] == [r["doc_id"] for r in rows]  # ...and is no hit
    assert gate.summary()["documents_blocked"] == 0
    # Every address part the policy removes is a hit when it is put back into its patient's timeline.
    raw_rows = read_zone(ctx.zones.raw / "synthea", RAW_DOCUMENT_SCHEMA).to_pylist()
    patient_of = {r["doc_id"]: int(uuid.UUID(r["patient_key"])) - 1000 for r in raw_rows}
    for timeline in timelines:
        i = patient_of[timeline["doc_id"]]
        phi = _phi(i, *PATIENTS[i])
        for value in [phi["street"], phi["city"], *(["01945"] if i % 2 else [])]:
            leaked = dict(timeline, text=timeline["text"] + f"\nSeen at {value} today.")
            assert gate.scan(leaked, gate.index.docs([leaked["doc_id"]])[0], {})["address"] == 1


def test_the_curate_stage_blocks_or_filters_no_timeline(synthea_run):
    # Last in the file: it adds the curate stage to the shared run (the tests above look at ingest and deid).
    ctx, _, _ = synthea_run
    deid = read_zone(ctx.zones.deid / "synthea", DEID_DOCUMENT_SCHEMA).to_pylist()
    timelines = {r["doc_id"] for r in deid if r["doc_type"] == "patient_timeline"}
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDCURATE_PSEUDONYM_KEY", "test-key-0123456789abcdef")
    try:
        run_stage(ctx, "curate")
    finally:
        mp.undo()
    curated = {r["doc_id"] for r in read_zone(ctx.zones.curated / "synthea", DEID_DOCUMENT_SCHEMA).to_pylist()}
    dropped = {
        r["doc_id"]: r["reason"]
        for p in sorted((ctx.zones.quarantine / "curate").glob("*.parquet"))
        for r in pq.read_table(p).to_pylist()
    }
    # This file's bundles come from one template, so a timeline may be a near-duplicate of another patient's
    # (real Synthea timelines differ); no timeline is blocked by the residual-PHI gate or a filter.
    assert {d for d in timelines if d not in curated} <= {d for d, r in dropped.items() if r.endswith("_duplicate")}
    assert timelines & curated
    assert not [r for r in dropped.values() if not r.endswith("_duplicate")]
